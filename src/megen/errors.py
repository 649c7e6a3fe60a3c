"""Error types. Every user-facing error is a :class:`MegenError` with a one-line message.

The CLI's error boundary (:mod:`megen.cli.common`) treats only :class:`MegenError` as bad input
(exit 2); any other exception is an internal error (exit 1).
"""

from __future__ import annotations


class MegenError(ValueError):
    """A user-facing error: bad input or configuration. The CLI prints it and exits with code 2."""


def check_text(text: object, what: str = "text") -> str:
    """Return ``text`` if it is a string that encodes as UTF-8 and holds no NUL character.

    Command-line arguments with bytes that are not UTF-8 arrive in Python as lone surrogates
    (``surrogateescape``); tokenizers and file writers fail on them with obscure errors, so text
    that enters the library (prompts, labels) is checked here first.

    Args:
        text: The value to check.
        what: Its name for the message, e.g. ``"--prompt"``.

    Returns:
        ``text`` unchanged.

    Raises:
        MegenError: ``text`` is not a string, contains NUL, or cannot be encoded as UTF-8.

    Example:
        >>> check_text("a photo of a sneaker", "--prompt")
        'a photo of a sneaker'
        >>> check_text("caf\\udce9", "--prompt")
        Traceback (most recent call last):
        ...
        megen.errors.MegenError: --prompt is not valid UTF-8 text (byte 0xe9 at character 4)
    """
    if not isinstance(text, str):
        raise MegenError(f"{what} must be text, got {type(text).__name__}")
    if "\x00" in text:
        raise MegenError(f"{what} contains a NUL character (at character {text.index(chr(0)) + 1})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        code = ord(bad)
        shown = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"code point U+{code:04X}"
        raise MegenError(f"{what} is not valid UTF-8 text ({shown} at character {exc.start + 1})") from None
    return text

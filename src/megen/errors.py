"""Error types. Every user-facing error is a :class:`MegenError` with a one-line message."""


class MegenError(ValueError):
    """A user-facing error: bad input or configuration. The CLI prints it and exits with code 2."""

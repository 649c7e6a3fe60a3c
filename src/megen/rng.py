"""Named random streams: every random draw of a run comes from a generator keyed by names.

A run has one master ``seed``; each consumer of randomness (the initial noise, one transfer's
channel, a sketch completion, a sweep batch) asks for its own stream by *name*, e.g.
``generator(seed, "transfer", "UE", "ES1", "latent", 0)``. Streams are independent of each other
and of the order in which they are asked for, so inserting an operation into a plan changes no
other operation's draws (there are no counters and no module-level random state).

**Derivation.** :func:`derive` hashes the seed and the names with BLAKE2b (8-byte digest). Each part
is encoded with a type tag and its length (``i:<decimal>`` for integers, ``s:<utf-8>`` for strings,
each prefixed by its byte length and a ``:``), so ``("ab", "c")`` and ``("a", "bc")`` or ``1`` and
``"1"`` never collide. The digest read as a big-endian integer and cut to 63 bits is the stream's
seed (a valid ``torch.Generator.manual_seed`` and SQLite integer).

**Devices.** :func:`generator` always returns a CPU generator: draws happen on the CPU and are moved
to the device afterwards, so results do not depend on the device.
"""

from __future__ import annotations

import hashlib

import torch

from megen.errors import MegenError

#: Stream seeds are in ``0 .. 2**63 - 1``.
SEED_BITS = 63
_MASK = (1 << SEED_BITS) - 1


def _encode(part: str | int) -> bytes:
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise MegenError(f"a random stream name must be a string or an integer, got {part!r}")
    body = (f"i:{part}" if isinstance(part, int) else f"s:{part}").encode("utf-8")
    return f"{len(body)}:".encode() + body


def derive(seed: int, *names: str | int) -> int:
    """The 63-bit seed of the stream named ``names`` under master seed ``seed``.

    Args:
        seed: Master seed, an integer ``>= 0``.
        *names: The stream's name parts (strings or integers), e.g. ``("transfer", "UE", "ES1")``.

    Returns:
        An integer in ``0 .. 2**63 - 1``; the same for the same arguments on every machine and run.

    Raises:
        MegenError: a negative seed, or a name part that is neither a string nor an integer.

    Example:
        >>> derive(0, "noise") == derive(0, "noise"), derive(0, "noise") != derive(1, "noise")
        (True, True)
        >>> derive(0, "a", "bc") != derive(0, "ab", "c"), derive(0, 1) != derive(0, "1")
        (True, True)
        >>> 0 <= derive(2**70, "x") < 2**63
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MegenError(f"a seed must be an integer >= 0, got {seed!r}")
    h = hashlib.blake2b(digest_size=8)
    h.update(_encode(seed))
    for part in names:
        h.update(_encode(part))
    return int.from_bytes(h.digest(), "big") & _MASK


def generator(seed: int, *names: str | int) -> torch.Generator:
    """A CPU :class:`torch.Generator` seeded with :func:`derive` ``(seed, *names)``.

    Example:
        >>> a = torch.randn(3, generator=generator(5, "Z"))
        >>> torch.equal(a, torch.randn(3, generator=generator(5, "Z")))
        True
    """
    return torch.Generator().manual_seed(derive(seed, *names))


__all__ = ["SEED_BITS", "derive", "generator"]

"""Device and link profiles (data in TOML) and the latency/energy they imply.

Units: ``peak_flops`` in FLOP/s, ``efficiency`` in (0, 1], ``power_w`` and ``tx_power_w`` in watts,
``bandwidth_hz`` in Hz (= complex channel uses per second), latencies in seconds, energies in joules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from megen.config import LINKS
from megen.errors import MegenError

NODE_FIELDS = ("peak_flops", "efficiency", "power_w")
LINK_FIELDS = ("bandwidth_hz", "tx_power_w")


@dataclass(frozen=True)
class DeviceProfile:
    """Compute profile of a node."""

    peak_flops: float
    efficiency: float
    power_w: float

    def seconds(self, flops: float) -> float:
        """Latency in seconds of ``flops`` floating-point operations."""
        return flops / (self.peak_flops * self.efficiency)

    def joules(self, flops: float) -> float:
        return self.seconds(flops) * self.power_w


@dataclass(frozen=True)
class LinkProfile:
    """Radio (or wired) resources of a link."""

    bandwidth_hz: float
    tx_power_w: float

    def seconds(self, channel_uses: int) -> float:
        """Airtime in seconds of ``channel_uses`` complex symbols."""
        return channel_uses / self.bandwidth_hz

    def joules(self, channel_uses: int) -> float:
        return self.seconds(channel_uses) * self.tx_power_w


@dataclass(frozen=True)
class Profiles:
    """All profiles: ``ES`` (every edge server), ``UE``, and the three link kinds."""

    es: DeviceProfile
    ue: DeviceProfile
    links: dict[str, LinkProfile]
    source: str = "default"

    def device(self, node: str) -> DeviceProfile:
        return self.ue if node == "UE" else self.es

    def link(self, kind: str) -> LinkProfile:
        return self.links[kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": {"ES": vars(self.es), "UE": vars(self.ue)},
            "links": {k: vars(v) for k, v in self.links.items()},
        }


def _number(table: dict, key: str, where: str, *, positive: bool) -> float:
    if key not in table:
        raise MegenError(f"profile {where} is missing the field {key!r}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MegenError(f"profile {where}.{key} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise MegenError(
            f"profile {where}.{key} must be {'> 0' if positive else '>= 0'} and finite, got {value}"
        )
    return value


def parse_profiles(data: dict, source: str = "<dict>") -> Profiles:
    """Validate a profiles mapping (the TOML layout of ``profiles.toml``)."""
    nodes = data.get("nodes")
    links = data.get("links")
    if not isinstance(nodes, dict) or not isinstance(links, dict):
        raise MegenError(f"profile file {source} needs [nodes.ES], [nodes.UE] and [links.*] tables")
    devs = {}
    for name in ("ES", "UE"):
        table = nodes.get(name)
        if not isinstance(table, dict):
            raise MegenError(f"profile file {source} is missing the table [nodes.{name}]")
        devs[name] = DeviceProfile(
            peak_flops=_number(table, "peak_flops", f"nodes.{name}", positive=True),
            efficiency=_number(table, "efficiency", f"nodes.{name}", positive=True),
            power_w=_number(table, "power_w", f"nodes.{name}", positive=False),
        )
        if devs[name].efficiency > 1:
            raise MegenError(
                f"profile nodes.{name}.efficiency must be in (0, 1], got {devs[name].efficiency}"
            )
    lks = {}
    for name in LINKS:
        table = links.get(name)
        if not isinstance(table, dict):
            raise MegenError(f"profile file {source} is missing the table [links.{name}]")
        lks[name] = LinkProfile(
            bandwidth_hz=_number(table, "bandwidth_hz", f"links.{name}", positive=True),
            tx_power_w=_number(table, "tx_power_w", f"links.{name}", positive=False),
        )
    return Profiles(es=devs["ES"], ue=devs["UE"], links=lks, source=source)


def default_profiles_path() -> Path:
    return Path(str(resources.files("megen.costs") / "profiles.toml"))


def load_profiles(path: Path | str | None = None) -> Profiles:
    """Load profiles from a TOML file (default: the shipped ``profiles.toml``).

    Raises:
        MegenError: the path is missing, a folder or unreadable, or the TOML is invalid.
    """
    p = Path(path) if path is not None else default_profiles_path()
    from megen.files import read_table

    data = read_table(p, "profile file")
    return parse_profiles(data, str(p) if path is not None else "default")

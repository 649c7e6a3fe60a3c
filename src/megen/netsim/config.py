"""Configuration of ``megen netsim`` (flags or a TOML file with the same keys), validated by pydantic.

Units are in the names: ``_m`` metres, ``_ghz``/``_mhz`` carrier and bandwidth, ``_dbm``/``_db``
powers and noise figures, ``_s`` seconds; ``arrival_rate`` is requests per second for the whole cell
(each request comes from a UE drawn uniformly). Bad values raise a one-line :class:`MegenError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from megen.errors import MegenError

DEFAULT_PROTOCOLS = ("central", "local", "CIAG", "ESUC", "UIDG", "DIUG")


class NetsimConfig(BaseModel):
    """Everything one ``megen netsim`` run needs (see the module docstring for units).

    Attributes:
        protocols: Protocols to simulate (names of ``megen protocols``).
        scenario: TR 38.901 scenario, ``umi`` (street canyon) or ``uma``.
        num_ues, num_es: UEs in the cell; edge servers (one FIFO pool) at the base station.
        es_batch: Largest ES batch: a free server takes up to this many waiting requests of the same
            task together, their time from the measured batch curve (1: one at a time, plain FIFO).
        batch_device: Device the batch curve is measured on (``cpu``, ``cuda`` ...).
        radius_m, min_distance_m: The annulus the UEs are dropped in.
        bandwidth_mhz: Carrier bandwidth of the uplink and of the downlink (each).
        scheduler: ``round_robin`` or ``proportional_fair`` (both links).
        harq_max_transmissions: HARQ transmissions per transport block at most.
        arrival_rate: Offered load, requests per second (whole cell).
        trace: CSV of arrivals (``time_s[,ue]`` per line) used instead of Poisson arrivals.
        requests: Arrivals per simulation (the first ``warmup`` share is not measured).
        deadline_s: Latency deadline; ``target_share`` of requests must meet it (service capacity).
        replications, seed: Independent replications; master seed.
        capacity: Compute the service capacity (bisection on the rate, a full simulation per point).
        capacity_steps: Bisection steps (precision ``2**-steps`` of the stability bound).
        model, steps, samples, snr_grid_db, demand_num_es, cache_dir, profiles: How demands are
            measured with the engine (and where they are cached); device profiles for seconds and
            joules (``None``: the shipped ones).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    scenario: Literal["umi", "uma"] = "umi"
    num_ues: int = Field(100, ge=1, le=10_000)
    num_es: int = Field(2, ge=1, le=64)
    es_batch: int = Field(1, ge=1, le=256)
    batch_device: str = "cpu"
    radius_m: float = Field(150.0, gt=0, le=10_000)
    min_distance_m: float = Field(10.0, ge=0)
    carrier_ghz: float = Field(3.5, ge=0.5, le=100)
    bandwidth_mhz: float = Field(20.0, gt=0, le=1000)
    scheduler: Literal["round_robin", "proportional_fair"] = "round_robin"
    ue_tx_power_dbm: float = Field(23.0, ge=-40, le=60)
    bs_tx_power_dbm: float = Field(44.0, ge=-40, le=80)
    ue_noise_figure_db: float = Field(9.0, ge=0, le=30)
    bs_noise_figure_db: float = Field(5.0, ge=0, le=30)
    harq_max_transmissions: int = Field(4, ge=1, le=16)
    arrival_rate: float = Field(1000.0, gt=0, le=1e9)
    trace: str | None = None
    requests: int = Field(20_000, ge=200, le=10_000_000)
    warmup: float = Field(0.1, ge=0, le=0.5)
    deadline_s: float = Field(0.05, gt=0, le=1e6)
    target_share: float = Field(0.95, gt=0, lt=1)
    replications: int = Field(1, ge=1, le=100)
    seed: int = Field(0, ge=0, lt=2**63)
    capacity: bool = True
    capacity_steps: int = Field(8, ge=1, le=30)
    model: str = "tiny"
    steps: int = Field(25, ge=1, le=1000)
    samples: int = Field(1, ge=1, le=64)
    snr_grid_db: tuple[float, ...] = (0.0, 10.0, 20.0)
    demand_num_es: int = Field(2, ge=2, le=4)
    cache_dir: str = "runs/netsim-cache"
    profiles: str | None = None

    @field_validator("protocols")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from megen.protocols.builders import canonical_name

        if not v:
            raise ValueError("give at least one protocol")
        return tuple(dict.fromkeys(canonical_name(p) for p in v))

    @field_validator("snr_grid_db")
    @classmethod
    def _ascending(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or list(v) != sorted(set(v)):
            raise ValueError("snr_grid_db must be a non-empty ascending list of distinct values")
        return v

    @property
    def bandwidth_hz(self) -> float:
        """Carrier bandwidth in Hz."""
        return self.bandwidth_mhz * 1e6

    def with_(self, **changes: Any) -> NetsimConfig:
        """A validated copy with ``changes`` applied."""
        return make_config({**self.model_dump(), **changes})


def make_config(data: dict[str, Any]) -> NetsimConfig:
    """Validate plain data (TOML keys or flags) into a :class:`NetsimConfig`.

    Raises:
        MegenError: an unknown key or a bad value (one line naming the key).
    """
    from megen.config import format_validation_error

    try:
        cfg = NetsimConfig.model_validate(data)
    except ValidationError as exc:
        raise MegenError("netsim " + format_validation_error(exc)) from None
    if cfg.min_distance_m >= cfg.radius_m:
        raise MegenError(
            f"netsim min_distance_m ({cfg.min_distance_m}) must be below radius_m ({cfg.radius_m})"
        )
    return cfg


def load_netsim_config(path: Path | str | None, overrides: dict[str, Any]) -> NetsimConfig:
    """Read a TOML (or JSON) file of :class:`NetsimConfig` keys, then apply ``overrides``."""
    from megen.files import read_table

    data = read_table(path, "netsim configuration file") if path is not None else {}
    return make_config({**data, **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "protocols": ("central", "local", "CIAG", "ESUC"),
        "num_ues": 50,
        "requests": 3000,
        "capacity_steps": 6,
        "arrival_rate": 1000.0,
    },
}
"""Named presets (``--preset``): keys of :class:`NetsimConfig` on top of the defaults."""


__all__ = ["DEFAULT_PROTOCOLS", "PRESETS", "NetsimConfig", "load_netsim_config", "make_config"]

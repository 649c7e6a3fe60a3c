"""The presets of ``megen reproduce``: sweep specifications shipped as TOML files in ``presets/``.

Three presets of one experiment, each a file in the format of ``megen sweep --config``:

* ``demo.toml`` (a few minutes on 2 cores; the main job of ``make demo``): the single-ES protocols and
  ``local`` on AWGN at 4 SNRs, 25 samples per point (FID is refused: fewer than 100 samples);
* ``default.toml`` (<= 15 minutes on 2 cores): single-ES protocols on AWGN and Rayleigh at 5 SNRs with
  100 samples per point on AWGN (25 elsewhere), the multi-ES protocols on AWGN, receiver-side denoising
  on/off, ``sync_every`` for the parallel protocols, and the centralized baseline with JPEG and WebP at
  several qualities and MCSs;
* ``full.toml`` (``--full``, about 1.5-2 hours on 2 cores): every point at 1000 samples, a finer AWGN
  grid (7 SNRs), ESUC with analog sketches (denoising on and off).

Grids (tags): ``main`` (quality vs SNR, costs, image grid), ``error_free`` (channel ``none``: the
reference for the 90% prompt-accuracy threshold), ``snr_aware`` (receiver-side denoising off for
CIAG's analog seed; ``full`` also ESUC with analog sketches, on and off: a digital sketch arrives
clean, so there is nothing to denoise), ``sync`` (parallel protocols' halo exchange period),
``frontier`` (centralized with every codec quality and MCS, MEG protocols with digital seeds).

Budget of ``default``: measured on the project's 2-core CPU (25 DDIM steps, 1 thread per worker), a
batch of 25 images takes ~2-4 s for a single-ES protocol and ~4-7 s for a multi-ES one. Only the main
AWGN grid has the 100 samples FID needs. The centralized frontier variants are cheap: the stage memo
(:mod:`megen.protocols.memo`) reuses the ES generation whenever the uplink delivered the same
reference bytes.

TOML has no null, so in a preset's grid lists the string ``"auto"`` stands for ``None`` (the option's
automatic choice, as in ``megen sweep --set mcs=auto``).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from megen.errors import MegenError
from megen.experiments.spec import SweepSpec, make_spec

PRESETS: tuple[str, ...] = ("demo", "default", "full")


def preset_data(preset: str) -> dict[str, Any]:
    """The plain data of a preset's TOML file, with ``"auto"`` grid values read as ``None``.

    Raises:
        MegenError: an unknown preset.
    """
    if preset not in PRESETS:
        raise MegenError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    text = resources.files("megen.experiments").joinpath("presets", f"{preset}.toml").read_text("utf-8")
    data = tomllib.loads(text)
    data["grid"] = [
        {k: [None if x == "auto" else x for x in v] if isinstance(v, list) else v for k, v in g.items()}
        for g in data.get("grid", [])
    ]
    return data


def preset_spec(preset: str, model: str = "tiny") -> SweepSpec:
    """The sweep of a preset for ``model`` (see the module docstring).

    Raises:
        MegenError: an unknown preset.
    """
    return make_spec({**preset_data(preset), "model": model})

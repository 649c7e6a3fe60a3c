"""The presets of ``megen reproduce``: sweep specifications shipped as TOML files in ``presets/``.

Three presets of one experiment, each a file in the format of ``megen sweep --config``:

* ``demo.toml`` (a few minutes on 2 cores; the main job of ``make demo``): the single-ES protocols with
  their matched baselines on AWGN around the cliffs (-14 to 10 dB), 25 samples per point (FID is
  refused: fewer than 100 samples), and the centralized frontier over every codec at 10 dB;
* ``default.toml`` (22 350 images; see the budget below): every single-ES protocol with its matched
  baselines (image at the UE: ``central``, ``central-fallback``, ``local``, ``local-i2i``; image at the
  ES: ``central-es``, ``local-upload``, ``local-i2i-upload``) from -15 to 20 dB on AWGN and Rayleigh
  with 1 dB steps over every outage cliff and prompt-accuracy threshold, 100 samples at 0 and 10 dB for
  FID, the multi-ES protocols on both channels (and with a wired backhaul), receiver-side denoising on/off, ``sync_every``, the
  centralized frontier (png and the header-once JPEG included), the digital-latent points, and a
  genie-vs-estimated receiver pair;
* ``full.toml`` (``--full``, 270 000 images, ~6-11 h on 2 cores): every configuration of ``default``
  with 1 dB steps from -15 to 0 dB on both channels, 250 samples per point (1000 at 0 and 10 dB on
  AWGN), ESUC with analog sketches.

Grids (tags): ``main`` (quality vs SNR, outage, costs, image grid), ``error_free`` (channel ``none``:
the reference for the 90% thresholds), ``snr_aware`` (receiver-side denoising off), ``sync``
(parallel protocols' halo exchange period), ``frontier`` (the centralized baselines over every codec,
quality and MCS; MEG protocols with digital seeds, the digital-latent points), ``genie`` (true noise
variance and perfect CSI beside the estimated defaults).

Budget of ``default``: measured on the project's 2-core CPU (25 DDIM steps, 1 thread per worker), a
batch of 25 images takes ~2-4 s for a single-ES protocol and ~4-7 s for a multi-ES one; before issue 10
the preset's 6 750 images took ~15 minutes; the issue-10 preset's 9 350 images took 21 min 50 s of
sweep on one worker (commit feefdfc); with every protocol on Rayleigh and the frontier on both
channels from -15 to 20 dB (15 375 images) it took 85 min on 2 workers while other jobs loaded the
machine (load average 7-12; commit 16ecd4a); the 1 dB brackets and multi-ES Rayleigh grids added
3 700 images (about 1 h under load). The full preset ran at 6.6-12 images/s on 2 workers with the
compiled LDPC kernel (:mod:`megen.link.ldpc_kernel`) and nothing else running, ~4.4 images/s
before it under shared load. The centralized frontier variants are cheaper: the stage
memo (:mod:`megen.protocols.memo`) reuses the ES generation whenever the uplink delivered the same
reference bytes. ``tests/test_presets.py`` pins each preset's digest and its image budget.

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

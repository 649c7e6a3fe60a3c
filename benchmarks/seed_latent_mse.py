"""Latent-domain SNR of the seed codecs on UIEG-like seeds (docs/seed_codecs.md).

Seeds are diffusion states ``sqrt(a) x0 + sqrt(1 - a) eps`` at the full preset's entry (strength 0.6,
25 DDIM steps), with ``x0`` drawn from the shipped KLT prior. Prints, per SNR and codec, the latent SNR
(seed variance over MSE) and the residual the receiver reported against the true MSE.

Usage:
    python benchmarks/seed_latent_mse.py [--seeds 200]
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from diffusers import DDIMScheduler

from megen.link.channels import ChannelConfig
from megen.link.seed_codecs import send_seed
from megen.link.seed_prior import load_prior
from megen.models.tiny import packaged_weights_dir

CODECS = (
    ("identity", None),
    ("linear", 64),
    ("linear", 128),
    ("linear", 512),
    ("learned", 128),
    ("learned", 512),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    sched = DDIMScheduler.from_config(json.loads((packaged_weights_dir() / "scheduler.json").read_text()))
    sched.set_timesteps(25)
    t = int(sched.timesteps[10])
    a = float(sched.alphas_cumprod[t])
    print(f"entry timestep {t}, abar {a:.3f}")
    prior = load_prior("tiny", (4, 8, 8))
    g = torch.Generator().manual_seed(0)
    n = args.seeds
    x0 = (
        prior.mean
        + (torch.randn(n, 256, generator=g, dtype=torch.float64) * prior.eigvals.sqrt()) @ prior.basis.T
    )
    eps = torch.randn(n, 256, generator=g, dtype=torch.float64)
    z = (math.sqrt(a) * x0 + math.sqrt(1 - a) * eps).float().reshape(n, 4, 8, 8)
    for snr in (-10.0, -5.0, 0.0, 10.0, 20.0):
        ch = ChannelConfig(kind="awgn", snr_db=snr)
        for codec, uses in CODECS:
            r = send_seed(z, ch, torch.Generator().manual_seed(1), codec=codec, uses=uses)
            mse = float((r.estimate - z).square().mean())
            reported = float(r.noise_var.mean()) if r.noise_var is not None else math.nan
            print(
                f"{snr:6.1f} dB {codec:8s} {uses or 128:4d} uses: latent SNR {10 * math.log10(float(z.var()) / mse):6.2f} dB,"
                f" reported residual {reported:.4f}, true {mse:.4f}"
            )


if __name__ == "__main__":
    main()

"""What the tile's position is worth: the ``linear`` codec's latent MSE with the exact window prior
against the prior averaged over positions (docs/seed_codecs.md, "Latent tiles").

On the tiny model's 500 Fashion-MNIST test latents (clean, ``a = 1``), cut to each tile of the default
multi-ES layout (2 ESs, halo 2: UIDG's windows, DIUG's cores, the halo strips), sent with ``linear``
over AWGN at a whole-latent budget of 64 uses (each tile its share), the same noise for both priors.

Usage:
    python benchmarks/seed_tile_prior.py
"""

from __future__ import annotations

import math

import torch

from megen.link.channels import ChannelConfig
from megen.link.seed_codecs import send_seed
from megen.training.seed_codec import codec_latents, tile_columns

SNRS_DB = (-5.0, 0.0, 10.0, 20.0)
BUDGET = 64


def main() -> None:
    _, heldout = codec_latents("tiny", 16, 0)
    print("| tile (columns) | " + " | ".join(f"{s:g} dB" for s in SNRS_DB) + " |")
    print("|---" * (1 + len(SNRS_DB)) + "|")
    for width, positions in sorted(tile_columns(heldout.shape[-1]).items(), reverse=True):
        for lo, hi in positions:
            x = heldout[..., lo:hi].float().contiguous()
            cells = []
            for snr in SNRS_DB:
                ch = ChannelConfig(kind="awgn", snr_db=snr)
                mse = []
                for cols in ((lo, hi), None):
                    est = send_seed(
                        x, ch, torch.Generator().manual_seed(1), codec="linear", uses=BUDGET, cols=cols
                    )
                    mse.append(float((est.estimate - x).square().mean()))
                cells.append(f"{mse[0]:.4f} / {mse[1]:.4f} ({10 * math.log10(mse[1] / mse[0]):+.2f})")
            print(f"| 4x8x{width} ({lo}:{hi}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

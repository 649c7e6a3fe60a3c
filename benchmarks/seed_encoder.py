"""Retrain the learned (deep JSCC) seed encoder alone and compare it with ``linear`` (docs/seed_codecs.md).

For experiments with the encoder's training (``megen train --parts seed-codec`` trains and ships the
whole ``learned`` codec). Starts from the shipped KLT prior and first-stage decoder of the tiny model, trains
:class:`~megen.link.seed_learned.SeedEncoderNet` end to end with a copy of the decoder on the tiny
model's Fashion-MNIST training latents (:func:`megen.training.seed_codec.train_encoder`), and prints the
held-out latent MSE of ``linear`` and of the learned encoder+decoder under the same noise draws, per SNR
and budget, with the gain in dB. Writes nothing into the package.

Usage:
    python benchmarks/seed_encoder.py --steps 3000 --latents 4000
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from megen.link.seed_learned import load_decoder
from megen.link.seed_prior import load_prior, load_seed_weights
from megen.training.seed_codec import (
    SeedCodecTrainConfig,
    beats_linear,
    codec_latents,
    jscc_heldout,
    train_encoder,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="optimiser steps of the encoder")
    parser.add_argument("--latents", type=int, default=4000, help="training latents")
    parser.add_argument("--max-minutes", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    latents, heldout = codec_latents("tiny", args.latents, args.seed)
    prior = load_prior("tiny", tuple(latents.shape[1:]))
    decoder = load_decoder(load_seed_weights("tiny"), prior.numel)
    if decoder is None:
        raise SystemExit("the tiny seed-codec weights hold no learned decoder")
    cfg = SeedCodecTrainConfig(seed=args.seed, encoder_steps=args.steps, max_minutes=args.max_minutes)
    t0 = time.time()
    encoder, joint, _ = train_encoder(prior, latents, decoder, cfg, print)
    print(f"trained in {time.time() - t0:.0f} s")
    report = jscc_heldout(prior, encoder, joint, heldout, args.seed)
    for key, v in report.items():
        gain = 10 * math.log10(v["linear"] / v["jscc"])
        print(f"{key}: linear {v['linear']:.5f} learned encoder {v['jscc']:.5f} gain {gain:+.2f} dB")
    print(json.dumps({"beats_linear_everywhere": beats_linear(report)}))


if __name__ == "__main__":
    main()

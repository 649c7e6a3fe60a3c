"""Simulated link throughput on this CPU (issue 3).

Usage: python benchmarks/bench_link.py [--repeats 5] [--threads 1]
Writes benchmarks/results/link.json. Targets: analog link >= 5e7 complex symbols/s; LDPC-coded 16-QAM
link >= 1e6 information bits/s (CRC + encode + map + AWGN + soft demap + decode + CRC check).
``control``: short control payloads (32, 200, 800 bits; QPSK near the cliff, so many blocks run every
iteration), decoded by the compiled kernel (the CPU default for short rows, :mod:`megen.link.ldpc_kernel`)
and by the tensor decoder, alternating in one run; the ratio is the speed-up on control data.
``decoder_rows``: the two decoders on the same LLRs (BG1, ``Z * blocks`` from 1 536 to 11 520 values,
blocks that converge and blocks that run every iteration): where the kernel stops paying
(``ldpc._KERNEL_MAX_ROW``). Both must give the same bits (``same_bits``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from megen.link import ldpc
from megen.link.analog import transmit_analog
from megen.link.channels import ChannelConfig
from megen.link.digital import transmit_bits
from megen.link.modulation import Mcs

ANALOG_TARGET = 5e7
CODED_TARGET = 1e6


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up (builds and caches codes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bench_analog(channel: ChannelConfig, repeats: int) -> dict[str, float]:
    """Latent-like batch [64, 4, 64, 64]: 64 items of 8192 symbols each."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 64, 64, generator=generator)
    uses = transmit_analog(x, channel, generator).channel_uses
    times = _timed(lambda: transmit_analog(x, channel, generator), repeats)
    return {
        "symbols_per_s_median": uses / statistics.median(times),
        "symbols_per_s_best": uses / min(times),
        "channel_uses_per_call": uses,
    }


def bench_coded(mcs: Mcs, snr_db: float, repeats: int) -> dict[str, float]:
    """16 transport blocks of 8424 bits (one full BG1 code block each) per call, AWGN."""
    generator = torch.Generator().manual_seed(1)
    payloads = [torch.randint(0, 2, (8424,), generator=generator, dtype=torch.uint8) for _ in range(16)]
    channel = ChannelConfig("awgn", snr_db)
    info_bits = sum(int(p.numel()) for p in payloads)
    errors: list[int] = []

    def run() -> None:
        results = transmit_bits(payloads, mcs, channel, generator)
        errors.append(sum(r.block_errors for r in results))

    times = _timed(run, repeats)
    return {
        "info_bits_per_s_median": info_bits / statistics.median(times),
        "info_bits_per_s_best": info_bits / min(times),
        "info_bits_per_call": info_bits,
        "snr_db": snr_db,
        "code_rate": mcs.code_rate or 1.0,
        "bler": sum(errors) / (16 * len(errors)),
    }


def _tensor_decoder(on: bool) -> None:
    """Route every CPU decode to the tensor decoder (``on``) or back to the default dispatch."""
    ldpc._KERNEL_MAX_ROW = 0 if on else KERNEL_MAX_ROW


KERNEL_MAX_ROW = ldpc._KERNEL_MAX_ROW


def bench_control(repeats: int) -> dict[str, dict[str, float]]:
    """Short payloads at QPSK r=0.2, 0 dB AWGN: seconds per call with the kernel and the tensor decoder."""
    out = {}
    for bits in (32, 200, 800):
        generator = torch.Generator().manual_seed(2)
        payloads = [torch.randint(0, 2, (bits,), generator=generator, dtype=torch.uint8) for _ in range(8)]
        channel = ChannelConfig("awgn", 0.0)
        mcs = Mcs("qpsk", 0.2)
        transmit_bits(payloads, mcs, channel, torch.Generator().manual_seed(3))  # warm-up: builds the code
        times: dict[str, list[float]] = {"kernel": [], "tensor": []}
        decoded: dict[str, list[int]] = {"kernel": [], "tensor": []}
        for _ in range(repeats):
            for name in ("kernel", "tensor"):
                _tensor_decoder(name == "tensor")
                start = time.perf_counter()
                transmit_bits(payloads, mcs, channel, torch.Generator().manual_seed(3))
                times[name].append(time.perf_counter() - start)
                res = transmit_bits(payloads, mcs, channel, torch.Generator().manual_seed(3))
                decoded[name] += [sum(int(r.ok) for r in res)]
        _tensor_decoder(False)
        out[f"{bits}_bits"] = {
            "s_per_call_kernel": statistics.median(times["kernel"]),
            "s_per_call_tensor": statistics.median(times["tensor"]),
            "speedup": statistics.median(times["tensor"]) / statistics.median(times["kernel"]),
            "same_blocks_decoded": decoded["kernel"] == decoded["tensor"],
        }
    return out


def bench_decoder_rows(repeats: int) -> dict[str, dict[str, float]]:
    """Kernel and tensor decoder on the same BG1 LLRs: seconds per decode by row size ``Z * blocks``."""
    out = {}
    generator = torch.Generator().manual_seed(4)
    for z, blocks in ((384, 4), (64, 25), (128, 25), (384, 12), (256, 25), (384, 30)):
        code = ldpc.QcLdpcCode("bg1", z)
        k = torch.full((blocks,), code.k_ldpc - z, dtype=torch.int64)
        for label, frac, sigma in (("converging", 1.0, 2.0), ("every_iteration", 0.6, 1.0)):
            n = int(code.n_ldpc * frac)
            llr = torch.randn(blocks, n, generator=generator) * sigma + sigma**2 / 2
            llr[:, : 2 * z] = 0.0  # punctured
            times: dict[str, list[float]] = {"kernel": [], "tensor": []}
            bits = {}
            for name, decode in (
                ("kernel", code._decode_nms_kernel),
                ("tensor", code._decode_nms_torch),
            ):
                full = torch.nn.functional.pad(llr, (0, 0))
                full[:, int(k[0]) : code.k_ldpc] = ldpc.KNOWN_LLR  # fillers, as decode() sets them
                bits[name] = decode(full, ldpc.DEFAULT_MAX_ITERATIONS, 0.75)
                times[name] = _timed(
                    lambda d=decode, f=full: d(f, ldpc.DEFAULT_MAX_ITERATIONS, 0.75), repeats
                )
            same = all(torch.equal(a, b) for a, b in zip(bits["kernel"], bits["tensor"], strict=True))
            kernel, tensor = statistics.median(times["kernel"]), statistics.median(times["tensor"])
            out[f"z{z}_x{blocks}_{label}"] = {
                "row_values": z * blocks,
                "s_kernel": kernel,
                "s_tensor": tensor,
                "speedup": tensor / kernel,
                "same_bits": same,
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch default)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "link.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    analog = {
        "awgn_mmse": bench_analog(ChannelConfig("awgn", 10.0), args.repeats),
        "rayleigh_mmse": bench_analog(ChannelConfig("rayleigh", 10.0, coherence_symbols=100), args.repeats),
    }
    coded = {
        "16qam_r0.5_snr8dB": bench_coded(Mcs("16qam", 0.5), 8.0, args.repeats),
        "16qam_r0.6_snr9.5dB": bench_coded(Mcs("16qam", 616 / 1024), 9.5, args.repeats),
    }
    control = bench_control(args.repeats)
    rows = bench_decoder_rows(args.repeats)
    analog_best = analog["awgn_mmse"]["symbols_per_s_best"]
    analog_median = analog["awgn_mmse"]["symbols_per_s_median"]
    coded_best = coded["16qam_r0.5_snr8dB"]["info_bits_per_s_best"]
    coded_median = coded["16qam_r0.5_snr8dB"]["info_bits_per_s_median"]
    out = {
        "analog": analog,
        "ldpc_16qam": coded,
        "control": control,
        "decoder_rows": rows,
        "kernel_max_row": KERNEL_MAX_ROW,
        "headline": {
            "analog_symbols_per_s_best": analog_best,
            "analog_symbols_per_s_median": analog_median,
            "analog_target": ANALOG_TARGET,
            "analog_best_meets_target": analog_best >= ANALOG_TARGET,
            "ldpc_16qam_info_bits_per_s_best": coded_best,
            "ldpc_16qam_info_bits_per_s_median": coded_median,
            "ldpc_16qam_target": CODED_TARGET,
            "ldpc_16qam_best_meets_target": coded_best >= CODED_TARGET,
        },
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "repeats": args.repeats,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for name, r in analog.items():
        print(
            f"analog {name}: {r['symbols_per_s_median']:.3g} symbols/s (median), {r['symbols_per_s_best']:.3g} best"
        )
    for name, r in coded.items():
        print(
            f"coded {name}: {r['info_bits_per_s_median']:.3g} info bits/s (median), "
            f"{r['info_bits_per_s_best']:.3g} best, BLER {r['bler']:.3f}"
        )
    for name, r in control.items():
        print(
            f"control {name}: {r['s_per_call_kernel'] * 1e3:.1f} ms (kernel) vs {r['s_per_call_tensor'] * 1e3:.1f} ms "
            f"(tensor), x{r['speedup']:.2f}, same blocks decoded: {r['same_blocks_decoded']}"
        )
    for name, r in rows.items():
        print(
            f"decoder {name} ({r['row_values']} values per row): {r['s_kernel'] * 1e3:.1f} ms (kernel) vs "
            f"{r['s_tensor'] * 1e3:.1f} ms (tensor), x{r['speedup']:.2f}, same bits: {r['same_bits']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""5G rate matching: circular buffer, redundancy-version starts, repetition below the mother rate."""

from __future__ import annotations

import pytest
import torch

from megen.errors import MegenError
from megen.link import ldpc
from megen.link.channels import ChannelConfig
from megen.link.digital import send_bytes, transmit_bits
from megen.link.mcs_tables import MCS_TABLES, all_entries, lookup, parse_entry, unique_schemes
from megen.link.modulation import Mcs


def test_tables_are_the_38_214_pdsch_tables() -> None:
    assert [len(MCS_TABLES[t]) for t in ("qam64", "qam256", "qam64lowse")] == [29, 28, 29]
    assert lookup("qam64", 0) == Mcs("qpsk", 120 / 1024) and lookup("qam64", 28) == Mcs("64qam", 948 / 1024)
    assert lookup("qam256", 20) == Mcs("256qam", 682.5 / 1024)
    assert lookup("qam64lowse", 0) == Mcs("qpsk", 30 / 1024) and lookup("qam64lowse", 28) == Mcs(
        "64qam", 772 / 1024
    )
    # spectral efficiency as 38.214 lists it (4 decimals)
    assert abs(lookup("qam256", 27).spectral_efficiency - 7.4063) < 1e-4
    assert abs(lookup("qam64lowse", 5).spectral_efficiency - 0.1934) < 1e-4
    assert len(all_entries()) == 86 and len(unique_schemes()) == 43
    assert parse_entry(" QAM64LOWSE:3 ") == lookup("qam64lowse", 3)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("qam1024:1", "unknown MCS table"),
        ("qam64:29", "indices 0..28"),
        ("qam256:-1", "0..27"),
        ("qam64:a", "TABLE:INDEX"),
    ],
)
def test_bad_entries_are_one_line_errors(text: str, match: str) -> None:
    with pytest.raises(MegenError, match=match):
        parse_entry(text)


def test_rv_starts_follow_38_212() -> None:
    code = ldpc.qc_code("bg2", 208)
    assert code.buffer_bits == 50 * 208
    assert [ldpc.rv_start(rv, "bg2", 208, code.buffer_bits) for rv in range(4)] == [
        0,
        13 * 208,
        25 * 208,
        43 * 208,
    ]
    bg1 = ldpc.qc_code("bg1", 96)
    assert bg1.buffer_bits == 66 * 96
    assert [ldpc.rv_start(rv, "bg1", 96, bg1.buffer_bits) for rv in range(4)] == [
        0,
        17 * 96,
        33 * 96,
        56 * 96,
    ]
    with pytest.raises(MegenError, match="0..3"):
        ldpc.rv_start(4, "bg1", 96, bg1.buffer_bits)


def test_positions_wrap_around_the_buffer_and_skip_fillers() -> None:
    code = ldpc.qc_code("bg2", 208)
    k = 2072
    distinct = code.max_coded_bits(k)
    pos = code.transmit_positions(k, 3 * distinct + 10)
    assert pos.numel() == 3 * distinct + 10
    assert torch.equal(pos[:distinct], pos[distinct : 2 * distinct])  # repetition: the same buffer again
    assert int(pos[0]) == 2 * 208 and not bool(((pos >= k) & (pos < code.k_ldpc)).any())  # fillers skipped
    assert len(set(pos[:distinct].tolist())) == distinct  # each bit once per lap
    rv2 = code.transmit_positions(k, 500, rv=2)
    assert int(rv2[0]) == 2 * 208 + 25 * 208  # parity region: the RV 2 start is not a filler here


def test_combined_llrs_add_over_repeated_positions() -> None:
    pos = torch.tensor([3, 5, 3, 3])
    out = ldpc.combine_llrs(torch.tensor([[1.0, 2.0, 0.5, -0.25]]), pos, 6)
    assert out.tolist() == [[0.0, 0.0, 0.0, 1.25, 0.0, 2.0]]


def test_plans_repeat_below_the_mother_rate() -> None:
    plan = ldpc.plan_blocks(2048, 2, 30 / 1024)
    code = ldpc.qc_code(plan.base_graph, plan.lifting)
    assert plan.base_graph == "bg2"
    assert plan.coded_bits > 6 * code.max_coded_bits(plan.block_bits)  # E >> N: about 6.7 laps
    assert abs(plan.block_bits / plan.coded_bits - 30 / 1024) < 1e-3


def test_lowest_entry_decodes_at_minus_10_db() -> None:
    """QPSK 30/1024 (qam64lowse:0): 10% BLER near -12 dB, so -10 dB AWGN delivers every block."""
    g = torch.Generator().manual_seed(3)
    payloads = [torch.randint(0, 2, (1024,), generator=g) for _ in range(8)]
    results = transmit_bits(payloads, lookup("qam64lowse", 0), ChannelConfig("awgn", -10.0), g)
    assert all(r.ok for r in results)
    assert all(torch.equal(r.bits, p.to(torch.uint8)) for r, p in zip(results, payloads, strict=True))
    # and 10 dB lower nothing gets through: the repetition gain is real, not a bypass
    bad = transmit_bits(payloads[:4], lookup("qam64lowse", 0), ChannelConfig("awgn", -20.0), g)
    assert not any(r.ok for r in bad)


def test_low_rate_bytes_round_trip_noiseless() -> None:
    res = send_bytes(b"control data", lookup("qam64lowse", 2), ChannelConfig("none"), torch.Generator())
    assert res.ok and res.bytes_received == b"control data"
    assert res.channel_uses * 2 * (50 / 1024) >= res.info_bits + res.header_bits

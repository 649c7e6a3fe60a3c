"""Digital link: QAM, uncoded BER against closed forms, 5G LDPC coding, CRC detection, bytes API."""

from __future__ import annotations

import math
import os

import pytest
import torch
from sionna.phy.mapping import Demapper

from megen.errors import MegenError
from megen.link import ldpc
from megen.link.channels import ChannelConfig
from megen.link.digital import send_bytes, send_bytes_batch, transmit_bits
from megen.link.modulation import MODULATIONS, Mcs, demap_llr, map_bits
from megen.link.simulate import simulate_link
from megen.link.theory import ber_awgn, ber_bpsk_rayleigh, q_function


def _samples_for(ber: float) -> int:
    """Bits so that 10% relative error is >= 4 standard deviations, with a factor 2 for bits that err
    together (two bits of one symbol): N = 2 * 16 * (1 - p) / (0.1^2 p)."""
    return int(math.ceil(2 * 1600 * (1 - ber) / ber))


@pytest.mark.parametrize("modulation", list(MODULATIONS))
def test_constellations_have_unit_energy(modulation: str) -> None:
    m = MODULATIONS[modulation]
    labels = torch.arange(2**m)
    bits = ((labels.unsqueeze(1) >> torch.arange(m - 1, -1, -1)) & 1).reshape(1, -1)
    points = map_bits(bits, modulation)
    assert float(points.abs().square().mean()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("modulation", ["qpsk", "16qam", "64qam", "256qam"])
def test_per_dimension_demapper_equals_full_qam_demapper(modulation: str) -> None:
    m = MODULATIONS[modulation]
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (2, 200 * m), generator=g)
    x = map_bits(bits, modulation)
    nv = torch.rand(2, 200, generator=g) * 0.2 + 0.01
    noise = (
        torch.complex(torch.randn(2, 200, generator=g), torch.randn(2, 200, generator=g)) * (nv / 2).sqrt()
    )
    y = (x + noise).to(torch.complex64)
    reference = Demapper("app", "qam", m, device="cpu")(y, nv).clamp(-50, 50)
    assert torch.allclose(demap_llr(y, nv, modulation), reference, atol=1e-3)


@pytest.mark.theory
@pytest.mark.parametrize(
    ("modulation", "snrs_db", "closed_form"),
    [
        ("bpsk", (0.0, 4.0, 6.5), lambda s: q_function(math.sqrt(2 * s))),
        ("qpsk", (3.0, 7.0, 9.5), lambda s: q_function(math.sqrt(s))),
        (
            "16qam",
            (10.0, 13.0, 16.0),
            lambda s: (
                (
                    3 * q_function(math.sqrt(s / 5))
                    + 2 * q_function(3 * math.sqrt(s / 5))
                    - q_function(5 * math.sqrt(s / 5))
                )
                / 4
            ),
        ),
    ],
)
def test_uncoded_awgn_ber_matches_closed_form(
    modulation: str, snrs_db: tuple[float, ...], closed_form
) -> None:
    for i, snr_db in enumerate(snrs_db):
        expected = closed_form(10 ** (snr_db / 10))
        assert 1e-4 <= expected <= 1e-1
        assert ber_awgn(modulation, snr_db) == pytest.approx(expected, rel=1e-5)
        num_bits = _samples_for(expected)
        stats = simulate_link(
            Mcs(modulation, None), ChannelConfig("awgn", snr_db), num_bits, torch.Generator().manual_seed(i)
        )
        assert stats.bit_errors >= 1000
        assert stats.ber == pytest.approx(expected, rel=0.10), (modulation, snr_db, stats.ber, expected)


@pytest.mark.theory
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_uncoded_rayleigh_bpsk_ber_matches_closed_form(snr_db: float) -> None:
    expected = ber_bpsk_rayleigh(snr_db)
    channel = ChannelConfig("rayleigh", snr_db, coherence_symbols=1)  # i.i.d. fading: independent errors
    stats = simulate_link(
        Mcs("bpsk", None), channel, _samples_for(expected) // 2, torch.Generator().manual_seed(7)
    )
    assert stats.ber == pytest.approx(expected, rel=0.10)


@pytest.mark.parametrize("modulation", list(MODULATIONS))
@pytest.mark.parametrize("code_rate", [None, 0.2, 0.5, 0.9])
def test_ideal_link_delivers_every_bit(modulation: str, code_rate: float | None) -> None:
    g = torch.Generator().manual_seed(1)
    payloads = [torch.randint(0, 2, (n,), generator=g) for n in (1, 700, 9000)]
    results = transmit_bits(payloads, Mcs(modulation, code_rate), ChannelConfig("none"), g)
    for payload, res in zip(payloads, results, strict=True):
        assert res.ok and res.block_errors == 0
        assert torch.equal(res.bits, payload.to(torch.uint8))
        assert res.channel_uses == res.plan.num_symbols


def test_segmentation_follows_5g_limits() -> None:
    plan = ldpc.plan_blocks(20_000, 4, 0.5)
    assert plan.base_graph == "bg1" and plan.num_blocks == 3 and plan.block_bits <= 8448
    assert plan.num_blocks * plan.payload_bits >= 20_000
    small = ldpc.plan_blocks(200, 2, 0.5)
    assert small.base_graph == "bg2" and small.num_blocks == 1 and small.block_bits == 224
    low = ldpc.plan_blocks(8000, 2, 0.25)
    assert low.base_graph == "bg2" and low.block_bits <= 3840
    for each in (plan, small, low):
        assert each.coded_bits % each.bits_per_symbol == 0
        rate = each.block_bits / each.coded_bits
        assert rate == pytest.approx(0.5 if each is not low else 0.25, rel=0.05)


def test_crc24_matches_sionna_for_any_length() -> None:
    from sionna.phy.fec.crc import CRCEncoder

    g = torch.Generator().manual_seed(2)
    for k in (16, 1000, 8424):
        bits = torch.randint(0, 2, (3, k), generator=g).to(torch.float32)
        assert torch.equal(ldpc.crc24(bits), CRCEncoder("CRC24A", device="cpu")(bits)[:, k:])


def test_codewords_satisfy_parity_checks() -> None:
    code = ldpc.qc_code("bg2", 40)
    u = torch.randint(0, 2, (4, 300), generator=torch.Generator().manual_seed(3)).to(torch.float32)
    full = code.encode(u)
    pcm = code.encoder.pcm.tocsr()
    computed = code.k_ldpc + code.n_enc - (code.k_enc - 2 * code.z)  # parity the encoder produced
    rows = [r for r in range(pcm.shape[0]) if pcm.indices[pcm.indptr[r] : pcm.indptr[r + 1]].max() < computed]
    assert len(rows) > 20 * code.z
    syndrome = (pcm[rows] @ full.T.numpy().astype("int64")) % 2
    assert int(syndrome.sum()) == 0


@pytest.mark.equivalence
def test_decoder_is_independent_of_batch_order() -> None:
    """Early termination drops converged blocks from the batch; block i's result must not depend on it."""
    g = torch.Generator().manual_seed(4)
    payloads = [torch.randint(0, 2, (1500,), generator=g) for _ in range(12)]
    mcs = Mcs("16qam", 0.5)
    plan = ldpc.plan_blocks(1500, 4, 0.5)
    code = ldpc.qc_code(plan.base_graph, plan.lifting)
    blocks = torch.stack([torch.cat([p.float(), ldpc.crc24(p.float().unsqueeze(0))[0]]) for p in payloads])
    full = code.encode(blocks)
    pos = code.transmit_positions(plan.block_bits, plan.coded_bits)
    noisy = (1 - 2 * full[:, pos]) * 2.0 + torch.randn(12, len(pos), generator=g) * 1.9  # mixed convergence
    llr = torch.zeros(12, int(pos.max()) + 1)
    llr[:, pos] = noisy
    k = torch.full((12,), plan.block_bits)
    bits, converged = code.decode(llr, k, scale=ldpc.nms_scale(mcs.code_rate or 0.5))
    assert 0 < int(converged.sum()) < 12
    perm = torch.randperm(12, generator=g)
    bits_p, converged_p = code.decode(llr[perm], k, scale=ldpc.nms_scale(0.5))
    assert torch.equal(bits_p, bits[perm]) and torch.equal(converged_p, converged[perm])


@pytest.mark.equivalence
@pytest.mark.parametrize(
    ("base_graph", "z", "blocks", "sent"),
    [("bg2", 8, 30, 1.0), ("bg2", 52, 9, 0.45), ("bg1", 20, 30, 1.0), ("bg1", 384, 3, 0.6)],
)
def test_compiled_kernel_gives_the_tensor_decoders_bits(
    base_graph: str, z: int, blocks: int, sent: float
) -> None:
    """The CPU kernel and the tensor decoder: same hard decisions and convergence flags, bit for bit,
    on blocks that converge at different iterations, blocks that never do, punctured (+0.0) and
    unsent (-0.0) positions, fillers and a pruned extension part (``sent < 1``)."""
    code = ldpc.QcLdpcCode(base_graph, z)
    g = torch.Generator().manual_seed(z)
    n = max(int(code.n_ldpc * sent), code.k_ldpc + 1)
    sigma = torch.linspace(0.8, 2.5, blocks).unsqueeze(1)  # from hopeless to easy
    llr = torch.randn(blocks, n, generator=g) * sigma + sigma**2 / 2
    llr[:, : 2 * z] = 0.0
    llr[:, -7:] = -0.0
    full = llr.clone()
    full[:, code.k_ldpc - z : code.k_ldpc] = ldpc.KNOWN_LLR  # fillers, as decode() sets them
    kernel = code._decode_nms_kernel(full, ldpc.DEFAULT_MAX_ITERATIONS, 0.75)
    tensor = code._decode_nms_torch(full, ldpc.DEFAULT_MAX_ITERATIONS, 0.75)
    assert torch.equal(kernel[0], tensor[0]) and torch.equal(kernel[1], tensor[1])
    assert 0 < int(kernel[1].sum()) < blocks or sent < 1.0  # a mix of converged and failed blocks
    # and decode() itself routes short rows to the kernel, long ones to the tensor decoder: same bits
    k = torch.full((blocks,), code.k_ldpc - z)
    torch.testing.assert_close(code.decode(llr, k)[0], kernel[0], atol=0, rtol=0)


@pytest.mark.theory
def test_min_sum_decoder_close_to_sionna_bp() -> None:
    g = torch.Generator().manual_seed(5)
    plan = ldpc.plan_blocks(1000, 2, 0.5)
    code = ldpc.qc_code(plan.base_graph, plan.lifting)
    u = torch.randint(0, 2, (60, plan.block_bits), generator=g).to(torch.float32)
    pos = code.transmit_positions(plan.block_bits, plan.coded_bits)
    clean = 1 - 2 * code.encode(u)[:, pos]
    sigma = 0.9
    noisy = (clean + sigma * torch.randn(clean.shape, generator=g)) * (2 / sigma**2)
    llr = torch.zeros(60, int(pos.max()) + 1)
    llr[:, pos] = noisy
    k = torch.full((60,), plan.block_bits)
    errors = {}
    for backend in ("nms", "sionna"):
        bits, _ = code.decode(llr, k, max_iterations=20, backend=backend, scale=ldpc.nms_scale(0.5))
        errors[backend] = int((bits[:, : plan.block_bits] != u).any(dim=1).sum())
    assert errors["sionna"] > 0
    assert abs(errors["nms"] - errors["sionna"]) <= max(6, errors["sionna"] // 2), errors


@pytest.mark.theory
def test_coded_bler_falls_with_snr_and_respects_shannon() -> None:
    mcs = Mcs("16qam", 0.5)
    blers = []
    for snr_db in (4.0, 5.5, 7.0, 8.5):
        g = torch.Generator().manual_seed(6)
        payloads = [torch.randint(0, 2, (2048,), generator=g) for _ in range(30)]
        results = transmit_bits(payloads, mcs, ChannelConfig("awgn", snr_db), g)
        bler = sum(r.block_errors for r in results) / sum(r.num_blocks for r in results)
        blers.append(bler)
        if bler <= 0.1:
            assert mcs.spectral_efficiency < math.log2(1 + 10 ** (snr_db / 10))
    assert blers[0] == 1.0 and blers[-1] == 0.0
    assert all(later <= earlier + 0.1 for earlier, later in zip(blers, blers[1:], strict=False))


def test_send_bytes_roundtrip_and_accounting() -> None:
    payload = os.urandom(1200)
    res = send_bytes(
        payload, Mcs("64qam", 0.65), ChannelConfig("awgn", 25.0), torch.Generator().manual_seed(8)
    )
    assert res.ok and res.bytes_received == payload and res.bit_errors == 0
    assert res.info_bits == 9600 and res.header_bits == 32
    assert res.channel_uses == res.coded_bits // 6
    assert res.coded_bits == pytest.approx((9600 + 32 + 24 * res.blocks) / 0.65, rel=0.02)


def test_failed_blocks_are_detected_and_reported() -> None:
    payloads = [os.urandom(500) for _ in range(4)]
    results = send_bytes_batch(
        payloads, Mcs("256qam", 0.9), ChannelConfig("awgn", 5.0), torch.Generator().manual_seed(9)
    )
    for payload, res in zip(payloads, results, strict=True):
        assert not res.ok and res.block_errors == res.blocks >= 1 and not res.header_ok
        assert len(res.bytes_received) == len(payload) and res.bit_errors > 0


def test_headers_travel_with_payload() -> None:
    res = send_bytes(
        b"\x01\x02", Mcs("qpsk", 0.5), ChannelConfig("rayleigh", 30.0), torch.Generator(), header=b"HDR!"
    )
    assert res.header_received == b"HDR!" and res.header_bits == 32 + 32 and res.header_ok


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: send_bytes(b"", Mcs(), ChannelConfig(), torch.Generator()), "empty"),
        (lambda: Mcs("8psk", 0.5), "unknown modulation"),
        (lambda: Mcs("qpsk", 1.0), r"\(0, 1\)"),
        (lambda: Mcs("qpsk", 0.0), r"\(0, 1\)"),
        (lambda: Mcs("qpsk", -0.5), r"\(0, 1\)"),
        (lambda: Mcs("qpsk", 0.02), "5G LDPC range"),
        (lambda: transmit_bits([torch.tensor([0, 2])], Mcs(), ChannelConfig(), torch.Generator()), "0 or 1"),
        (lambda: transmit_bits([], Mcs(), ChannelConfig(), torch.Generator()), "no payloads"),
        (lambda: simulate_link(Mcs(), ChannelConfig(), -10, torch.Generator()), "positive"),
        (lambda: simulate_link(Mcs(), ChannelConfig(), 0, torch.Generator()), "positive"),
    ],
)
def test_bad_digital_input_is_a_clear_error(call, match: str) -> None:
    with pytest.raises(MegenError, match=match):
        call()

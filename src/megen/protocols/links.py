"""Links as the engine sees them: one call sends any item over a link kind, in a mode.

* Seeds (``latent``, ``z_ref``) and sketches/images can go **analog** (per-item power
  normalisation, 2 reals per channel use, :func:`megen.link.analog.transmit_analog`) or **digital**
  (seeds quantised to ``seed_bits`` bits; images compressed with a codec; then 5G LDPC + QAM).
* Digital links use the MCS of the link's ``transmission`` section (:class:`~megen.config.LinkSection`) or, by default, the link adaptation's
  choice for the link's SNR and channel kind (the highest rate with BLER <= 10%).
* The prompt (and the few control values with it: seed, steps, strength, guidance = 64 bits) is
  control data: sent digitally with the same MCS and counted, and assumed delivered (control
  channels are protected by retransmission; a lost prompt would stall any protocol alike).

Payload bits count what is sent digitally (control, side information, compressed or quantised
payloads); analog symbols carry no bits, only channel uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from megen.config import LINKS, LinksSection
from megen.errors import MegenError
from megen.link.analog import transmit_analog
from megen.link.channels import ChannelConfig
from megen.link.codecs import send_image_digital, send_tensor_quantized
from megen.link.digital import send_bytes_batch
from megen.link.mcs import select_mcs
from megen.link.modulation import MODULATIONS, Mcs
from megen.link.seed_codecs import send_seed, uses_seed_codec

CONTROL_BITS_PER_PROMPT = 64
IMAGE_ITEMS = ("reference", "image", "sketch")
TENSOR_ITEMS = ("latent", "z_ref")


@dataclass(frozen=True)
class Sent:
    """What came out of a link.

    Attributes:
        value: The received item (same type and shape as sent).
        channel_uses: Complex channel uses spent (pilots included).
        payload_bits: Digital bits sent (control, side information, coded payload's info bits).
        ok: Whether every digital block decoded (always True for analog).
        failures: Failed code blocks (digital) or undecodable images.
        effective_snr_db: Mean post-equalisation SNR (analog), or the link SNR (digital).
        noise_var: Analog only: per-item noise variance ``[B]`` in the item's own units, for the
            *unbiased* estimate ``unbiased`` (``None`` for digital or the ideal link).
        unbiased: Analog only: ``value / gain``, an unbiased estimate of what was sent.
    """

    value: Any
    channel_uses: int
    payload_bits: int
    ok: bool = True
    failures: int = 0
    effective_snr_db: float | None = None
    noise_var: torch.Tensor | None = None
    unbiased: torch.Tensor | None = None


class LinkSet:
    """The three link kinds of a run (``uplink``, ``downlink``, ``backhaul``)."""

    def __init__(self, links: LinksSection, model: str = "tiny") -> None:
        self.model = model  # whose seed-codec weights the seed codecs use
        self.settings = {link: links.of(link) for link in LINKS}
        self._channels = {link: sec.channel_config() for link, sec in self.settings.items()}
        self._mcs_cache: dict[str, Any] = {}

    def channel(self, link: str) -> ChannelConfig:
        """The link layer's channel configuration of ``link``."""
        return self._channels[link]

    def mcs_for(self, link: str) -> Mcs:
        """The MCS of a link: the fixed one, or the link adaptation's choice for its SNR."""
        if link not in self._mcs_cache:
            self._mcs_cache[link] = resolve_mcs(self.settings[link].transmission.mcs, self._channels[link])
        return self._mcs_cache[link]

    def send(self, kind: str, value: Any, mode: str, link: str, gen: torch.Generator) -> Sent:
        """Send item ``kind`` (``prompt``, ``latent``, ``z_ref``, ``reference``, ``image``, ``sketch``)."""
        s, ch = self.settings[link], self._channels[link]
        if kind == "prompt":
            return self._send_prompt(value, link, gen)
        c = s.codec
        if kind in TENSOR_ITEMS and uses_seed_codec(
            c.seed, c.seed_uses, c.seed_power, mode, value[0].numel()
        ):
            return self._send_seed(value, link, gen)
        if mode == "analog":
            return self._send_analog(kind, value, ch, gen)
        if mode != "digital":
            raise MegenError(f"unknown transmission mode {mode!r}")
        mcs = self.mcs_for(link)
        snr = None if ch.kind == "none" else ch.snr_db
        if kind in IMAGE_ITEMS:
            ri = send_image_digital(value, s.codec.image, s.codec.image_quality, mcs, ch, gen)
            return Sent(
                value=ri.images,
                channel_uses=ri.channel_uses,
                payload_bits=ri.info_bits + ri.header_bits,
                ok=bool(ri.ok.all()),
                failures=int((~ri.decoded).sum()) + ri.block_errors,
                effective_snr_db=snr,
            )
        if kind in TENSOR_ITEMS:
            rq = send_tensor_quantized(value, s.codec.seed_bits, mcs, ch, gen)
            return Sent(
                value=rq.received,
                channel_uses=rq.channel_uses,
                payload_bits=rq.info_bits + rq.header_bits,
                ok=bool(rq.ok.all()),
                failures=rq.block_errors,
                effective_snr_db=snr,
            )
        raise MegenError(f"cannot send item {kind!r} digitally")

    def _send_prompt(self, prompts: list[str], link: str, gen: torch.Generator) -> Sent:
        """Prompts + control values, really sent (so pilots and coding are counted), assumed delivered."""
        payloads = [p.encode("utf-8") + bytes(CONTROL_BITS_PER_PROMPT // 8) for p in prompts]
        results = send_bytes_batch(payloads, self.mcs_for(link), self._channels[link], gen)
        uses = sum(r.channel_uses for r in results)
        bits = sum(r.info_bits + r.header_bits for r in results)
        return Sent(value=list(prompts), channel_uses=uses, payload_bits=bits)

    def _send_seed(self, value: torch.Tensor, link: str, gen: torch.Generator) -> Sent:
        """A seed through its link's seed codec (:func:`megen.link.seed_codecs.send_seed`)."""
        c, ch = self.settings[link].codec, self._channels[link]
        mcs = self.mcs_for(link) if c.seed == "digital" else None
        r = send_seed(
            value, ch, gen, codec=c.seed, uses=c.seed_uses, power=c.seed_power, model=self.model, mcs=mcs
        )
        unbiased = r.estimate if r.unbiased is None else r.unbiased
        var = r.noise_var if r.unbiased_var is None else r.unbiased_var
        args = (r.channel_uses, r.payload_bits, r.ok, r.failures, r.effective_snr_db)
        return Sent(r.estimate, *args, noise_var=var, unbiased=None if var is None else unbiased)

    def _send_analog(self, kind: str, value: torch.Tensor, ch: ChannelConfig, gen: torch.Generator) -> Sent:
        r = transmit_analog(value, ch, gen)
        received = r.received
        if kind in IMAGE_ITEMS:
            received = received.clamp(0, 1)
        noise = None
        unbiased = None
        if ch.kind != "none":
            per_item = r.noise_var.flatten(1).mean(1)
            noise = per_item
            unbiased = r.received / r.gain
        snr = None if ch.kind == "none" else float(r.effective_snr_db.mean())
        return Sent(
            value=received,
            channel_uses=r.channel_uses,
            payload_bits=r.side_info_bits,
            effective_snr_db=snr,
            noise_var=noise,
            unbiased=unbiased,
        )


def parse_mcs(text: str) -> Mcs:
    """``"16qam-0.5"`` (modulation-rate) or ``"qpsk-uncoded"`` -> :class:`Mcs`."""
    mod, sep, rate = text.strip().lower().partition("-")
    if not sep or mod not in MODULATIONS:
        raise MegenError(
            f"MCS must look like '16qam-0.5' or 'qpsk-uncoded' (modulations: {', '.join(MODULATIONS)}), got {text!r}"
        )
    if rate == "uncoded":
        return Mcs(mod, None)
    try:
        return Mcs(mod, float(rate.removeprefix("r")))
    except ValueError:
        raise MegenError(f"bad code rate in MCS {text!r}") from None


def resolve_mcs(mcs: str | None, channel: ChannelConfig) -> Mcs:
    """A fixed MCS (``"16qam-0.5"``) or, for ``None``, the link adaptation's choice at the channel's SNR."""
    if mcs is not None:
        return parse_mcs(mcs)
    return select_mcs(channel.snr_db if channel.kind != "none" else 0.0, channel).mcs

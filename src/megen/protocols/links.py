"""Links as the engine sees them: one call sends any item over a link kind, in a mode.

* Seeds (``latent``, ``z_ref``) and sketches/images can go **analog** (per-item power
  normalisation, 2 reals per channel use, :func:`megen.link.analog.transmit_analog`) or **digital**
  (seeds quantised to ``seed_bits`` bits; images compressed with a codec; then 5G LDPC + QAM).
* Digital links use the MCS of the link's ``transmission`` section (:class:`~megen.config.LinkSection`:
  ``16qam-0.5`` or a 38.214 entry such as ``qam64lowse:0``) or, by default, the link adaptation's
  choice for the link's SNR, channel kind and CSI (the highest spectral efficiency whose first
  transmission has BLER <= 10%; the most robust entry below that).
* Every digital transport block uses the link's HARQ (``transmission.harq``, ``max_transmissions``):
  each transmission's channel uses are counted, and a block that fails them all is an outage.
* Control data is sent the same way, digitally with HARQ at the link adaptation's MCS: the prompt
  and the control values with it (seed, steps, strength, guidance = 64 bits), and the side
  information of analog items (the float32 power scale per item). Its channel uses are counted, and a
  failed control transfer marks the item's transfer as failed (``Sent.ok == False``: an outage).

Payload bits count what is sent digitally (control, side information, compressed or quantised
payloads); analog symbols carry no bits, only channel uses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import torch

from megen.config import LINKS, LinksSection
from megen.errors import MegenError
from megen.link.analog import transmit_analog
from megen.link.channels import ChannelConfig
from megen.link.codecs import send_image_digital, send_tensor_quantized
from megen.link.digital import send_bytes_batch
from megen.link.harq import Harq
from megen.link.mcs import select_mcs
from megen.link.mcs_tables import parse_entry
from megen.link.modulation import MODULATIONS, Mcs
from megen.link.seed_codecs import send_seed, uses_seed_codec, whole_numel

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
        ok: Whether every digital transport block (payload, control and side information) decoded
            after HARQ; ``False`` means this transfer is in outage (for at least one item).
        item_ok: Per batch item, the same flag (the items whose own blocks all decoded); empty when
            the transfer is not per item (then ``ok`` holds for every item).
        failures: Failed code blocks (digital) or undecodable images, after HARQ.
        effective_snr_db: Mean post-equalisation SNR (analog), or the link SNR (digital).
        noise_var: Analog only: per-item noise variance ``[B]`` in the item's own units, for the
            *unbiased* estimate ``unbiased`` (``None`` for digital or the ideal link).
        unbiased: Analog only: ``value / gain``, an unbiased estimate of what was sent.
        transmissions: Transmissions of all its digital transport blocks (HARQ retransmissions and
            control data included; 0 when nothing went digitally).
    """

    value: Any
    channel_uses: int
    payload_bits: int
    ok: bool = True
    failures: int = 0
    effective_snr_db: float | None = None
    noise_var: torch.Tensor | None = None
    unbiased: torch.Tensor | None = None
    transmissions: int = 0
    item_ok: tuple[bool, ...] = ()


class LinkSet:
    """The three link kinds of a run (``uplink``, ``downlink``, ``backhaul``)."""

    def __init__(self, links: LinksSection, model: str = "tiny") -> None:
        self.model = model  # whose seed-codec weights the seed codecs use
        self.settings = {link: links.of(link) for link in LINKS}
        self._channels = {link: sec.channel_config() for link, sec in self.settings.items()}
        self._mcs_cache: dict[str, Any] = {}
        self.harq = {
            link: Harq(sec.transmission.harq, sec.transmission.max_transmissions)
            for link, sec in self.settings.items()
        }

    def channel(self, link: str) -> ChannelConfig:
        """The link layer's channel configuration of ``link``."""
        return self._channels[link]

    def mcs_for(self, link: str) -> Mcs:
        """The MCS of a link: the fixed one, or the link adaptation's choice for its SNR."""
        if link not in self._mcs_cache:
            self._mcs_cache[link] = resolve_mcs(self.settings[link].transmission.mcs, self._channels[link])
        return self._mcs_cache[link]

    def control_mcs_for(self, link: str) -> Mcs:
        """The MCS of control data on a link: always the link adaptation's choice."""
        key = f"control:{link}"
        if key not in self._mcs_cache:
            self._mcs_cache[key] = resolve_mcs(None, self._channels[link])
        return self._mcs_cache[key]

    def send(
        self,
        kind: str,
        value: Any,
        mode: str,
        link: str,
        gen: torch.Generator,
        cols: tuple[int, int] | None = None,
    ) -> Sent:
        """Send item ``kind`` (``prompt``, ``latent``, ``z_ref``, ``reference``, ``image``, ``sketch``).

        ``cols``: the latent columns a tile seed covers (its seed codec's prior; ``None``: unknown).
        """
        s, ch = self.settings[link], self._channels[link]
        if kind == "prompt":
            return self._send_prompt(value, link, gen)
        c = s.codec
        if kind in TENSOR_ITEMS and uses_seed_codec(
            c.seed,
            c.seed_uses,
            c.seed_power,
            mode,
            value[0].numel(),
            whole_numel(self.model, tuple(value.shape[1:]), c.seed_uses),
        ):
            return self._send_seed(value, link, gen, cols)
        if mode == "analog":
            return self._send_analog(kind, value, link, ch, gen)
        if mode != "digital":
            raise MegenError(f"unknown transmission mode {mode!r}")
        mcs = self.mcs_for(link)
        snr = None if ch.kind == "none" else ch.snr_db
        if kind in IMAGE_ITEMS:
            ri = send_image_digital(
                value, s.codec.image, s.codec.image_quality, mcs, ch, gen, harq=self.harq[link]
            )
            return Sent(
                value=ri.images,
                channel_uses=ri.channel_uses,
                payload_bits=ri.info_bits + ri.header_bits,
                ok=bool(ri.ok.all()),
                item_ok=tuple(bool(v) for v in ri.ok),
                failures=int((~ri.decoded).sum()) + ri.block_errors,
                effective_snr_db=snr,
                transmissions=sum(item.transmissions for item in ri.items),
            )
        if kind in TENSOR_ITEMS:
            rq = send_tensor_quantized(value, s.codec.seed_bits, mcs, ch, gen, harq=self.harq[link])
            return Sent(
                value=rq.received,
                channel_uses=rq.channel_uses,
                payload_bits=rq.info_bits + rq.header_bits,
                ok=bool(rq.ok.all()),
                item_ok=tuple(bool(v) for v in rq.ok),
                failures=rq.block_errors,
                effective_snr_db=snr,
                transmissions=sum(item.transmissions for item in rq.items),
            )
        raise MegenError(f"cannot send item {kind!r} digitally")

    def _send_prompt(self, prompts: list[str], link: str, gen: torch.Generator) -> Sent:
        """Prompts + control values, sent as control data (:meth:`send_control`)."""
        payloads = [p.encode("utf-8") + bytes(CONTROL_BITS_PER_PROMPT // 8) for p in prompts]
        control = self.send_control(payloads, link, gen)
        return Sent(
            value=list(prompts),
            channel_uses=control.channel_uses,
            payload_bits=control.payload_bits,
            ok=control.ok,
            item_ok=control.item_ok,
            failures=control.failures,
            transmissions=control.transmissions,
        )

    def send_control(self, payloads: list[bytes], link: str, gen: torch.Generator) -> Sent:
        """Control data: one transport block per payload, with HARQ at the link adaptation's MCS.

        Args:
            payloads: Non-empty byte strings (prompt and control values, side information).
            link: The link it crosses.
            gen: Source of randomness.

        Returns:
            :class:`Sent` with ``value`` the payloads as received; ``ok`` False if any block failed
            every transmission (an outage).
        """
        ch = self._channels[link]
        results = send_bytes_batch(payloads, self.control_mcs_for(link), ch, gen, harq=self.harq[link])
        return Sent(
            value=[r.bytes_received for r in results],
            channel_uses=sum(r.channel_uses for r in results),
            payload_bits=sum(r.info_bits + r.header_bits for r in results),
            ok=all(r.ok for r in results),
            item_ok=tuple(bool(r.ok) for r in results),
            failures=sum(r.block_errors for r in results),
            effective_snr_db=None if ch.kind == "none" else ch.snr_db,
            transmissions=sum(r.transmissions for r in results),
        )

    def _send_seed(
        self, value: torch.Tensor, link: str, gen: torch.Generator, cols: tuple[int, int] | None = None
    ) -> Sent:
        """A seed through its link's seed codec (:func:`megen.link.seed_codecs.send_seed`).

        An analog codec's side information (its ``payload_bits``: power scale and the like) crosses the
        link as control data (:meth:`_send_side_info`), counted and able to fail like any other.
        """
        c, ch = self.settings[link].codec, self._channels[link]
        digital = c.seed == "digital"
        r = send_seed(
            value,
            ch,
            gen,
            codec=c.seed,
            uses=c.seed_uses,
            power=c.seed_power,
            model=self.model,
            mcs=self.mcs_for(link) if digital else None,
            cols=cols,
            harq=self.harq[link],
        )
        unbiased = r.estimate if r.unbiased is None else r.unbiased
        var = r.noise_var if r.unbiased_var is None else r.unbiased_var
        side = Sent(None, 0, 0) if digital else self._send_side_info(value, r.payload_bits, link, gen)
        return Sent(
            r.estimate,
            channel_uses=r.channel_uses + side.channel_uses,
            payload_bits=r.payload_bits,
            ok=bool(r.ok) and side.ok,
            failures=r.failures + side.failures,
            effective_snr_db=r.effective_snr_db,
            noise_var=var,
            unbiased=None if var is None else unbiased,
            transmissions=r.transmissions + side.transmissions,
            item_ok=r.item_ok or side.item_ok,  # digital seeds: per item block; analog: side information
        )

    def _send_analog(
        self, kind: str, value: torch.Tensor, link: str, ch: ChannelConfig, gen: torch.Generator
    ) -> Sent:
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
        side = self._send_side_info(value, r.side_info_bits, link, gen)
        return Sent(
            value=received,
            channel_uses=r.channel_uses + side.channel_uses,
            payload_bits=side.payload_bits,
            ok=side.ok,
            item_ok=side.item_ok,
            failures=side.failures,
            effective_snr_db=snr,
            noise_var=noise,
            unbiased=unbiased,
            transmissions=side.transmissions,
        )

    def _send_side_info(self, value: torch.Tensor, bits: int, link: str, gen: torch.Generator) -> Sent:
        """The analog items' side information (``bits`` in all, the power scale per item) as control data.

        Each item's share (``bits / B``, whole bytes) carries its float32 RMS amplitude, the quantity
        its power normalisation scale is made of.
        """
        batch = int(value.shape[0])
        per_item = max(1, bits // (8 * batch))
        rms = value.detach().flatten(1).to(torch.float32).square().mean(1).sqrt().cpu()
        payloads = [struct.pack(">f", float(v)).ljust(per_item, b"\0")[:per_item] for v in rms]
        return self.send_control(payloads, link, gen)


def parse_mcs(text: str) -> Mcs:
    """``"16qam-0.5"`` (modulation-rate), ``"qpsk-uncoded"`` or ``"qam64lowse:0"`` (38.214 entry) -> :class:`Mcs`."""
    if ":" in text:
        return parse_entry(text)
    mod, sep, rate = text.strip().lower().partition("-")
    if not sep or mod not in MODULATIONS:
        raise MegenError(
            f"MCS must look like '16qam-0.5', 'qpsk-uncoded' or 'qam64:5' (modulations: {', '.join(MODULATIONS)}), got {text!r}"
        )
    if rate == "uncoded":
        return Mcs(mod, None)
    try:
        return Mcs(mod, float(rate.removeprefix("r")))
    except ValueError:
        raise MegenError(f"bad code rate in MCS {text!r}") from None


def resolve_mcs(mcs: str | None, channel: ChannelConfig) -> Mcs:
    """A fixed MCS (``"16qam-0.5"``, ``"qam64:5"``) or, for ``None``, the link adaptation's choice."""
    if mcs is not None:
        return parse_mcs(mcs)
    return select_mcs(channel.snr_db if channel.kind != "none" else 0.0, channel).mcs

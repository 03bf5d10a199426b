"""Knowledge distillation: a pruned model learns its unpruned self's outputs, without labels.

Fine-tuning a pruned model on the built-in synthetic figures suits the zoo models, which
were trained on them; a model trained on real images would be pulled away from what it
knew. :func:`distill` instead trains the pruned model (the student) to reproduce the
unpruned model's (the teacher's) outputs on the user's own images: person crops from a
COCO file's boxes, or whole images from a folder, with the training augmentation
(scale, rotation, flip). No keypoint label is read. The student's BatchNorm statistics
follow the new data too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pose_tuner.accuracy.dataset import COCO_KEYPOINT_NAMES, PersonInstance, load_coco_keypoints

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class DistillResult:
    steps: int
    seconds: float
    first_loss: float  # mean of the first steps' losses
    final_loss: float  # mean of the last steps' losses


def image_instances(images_dir: str, ann_path: str | None = None) -> list[PersonInstance]:
    """What to distill on: the people of a COCO file's boxes (``ann_path``), else every
    image of ``images_dir`` as one whole-image crop. Keypoints are never used."""
    if ann_path:
        return load_coco_keypoints(ann_path, images_dir)
    from PIL import Image

    if not os.path.isdir(images_dir):
        raise ValueError(f"distillation images: {images_dir!r} is not a folder")
    files = sorted(f for f in os.listdir(images_dir) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f"distillation images: no image file ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"in {images_dir!r}")
    out = []
    for i, name in enumerate(files):
        path = os.path.join(images_dir, name)
        with Image.open(path) as im:
            w, h = im.size
        out.append(PersonInstance(path, i, i, (0.0, 0.0, float(w), float(h)),
                                  np.zeros((len(COCO_KEYPOINT_NAMES), 3)), float(w * h)))
    return out


def _mse(student_out, teacher_out) -> torch.Tensor:
    if isinstance(student_out, torch.Tensor):
        return nn.functional.mse_loss(student_out, teacher_out)
    return sum(nn.functional.mse_loss(s, t) for s, t in zip(student_out, teacher_out))


def distill(student: nn.Module, teacher: nn.Module, steps: int, input_size: Sequence[int],
            instances: Sequence[PersonInstance], *, lr: float = 5e-4, batch_size: int = 8,
            seed: int = 0, progress: Callable[[str], None] | None = None) -> DistillResult:
    """Train ``student`` in place for ``steps`` steps to match ``teacher`` (mean squared
    error of the outputs) on augmented crops of ``instances``; returns the loss before and
    after. The learning rate warms up, then follows a cosine to 1% of ``lr``."""
    from pose_tuner.training.data import InfiniteSampler, KeypointDataset
    from pose_tuner.training.train import default_threads, lr_factor

    if steps <= 0:
        raise ValueError(f"distillation needs steps > 0, got {steps}")
    log = progress or (lambda _m: None)
    ds = KeypointDataset(instances, tuple(int(v) for v in input_size), seed=seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size,
                                         sampler=InfiniteSampler(len(ds), seed=seed))
    saved = torch.get_num_threads()
    torch.set_num_threads(default_threads())
    teacher.eval()
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    warmup = min(50, max(1, steps // 10))
    losses, t0, last = [], time.perf_counter(), time.perf_counter()
    try:
        it = iter(loader)
        for step in range(steps):
            x = next(it)[0]
            for g in opt.param_groups:
                g["lr"] = lr * lr_factor(step / steps, step, warmup)
            with torch.no_grad():
                target = teacher(x)
            loss = _mse(student(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(f"distillation loss became {losses[-1]} at step {step}")
            if time.perf_counter() - last > 30:
                last = time.perf_counter()
                log(f"step {step + 1}/{steps}  loss {np.mean(losses[-10:]):.3e}")
    finally:
        torch.set_num_threads(saved)
        student.eval()
    k = max(1, min(10, steps // 5))
    res = DistillResult(steps, time.perf_counter() - t0, float(np.mean(losses[:k])),
                        float(np.mean(losses[-k:])))
    log(f"distilled {steps} steps in {res.seconds:.0f} s: loss {res.first_loss:.3e} -> "
        f"{res.final_loss:.3e}")
    return res

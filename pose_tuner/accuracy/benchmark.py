"""Which data accuracy is measured on, and measuring it for any ``predict``.

``AccuracySpec`` (frozen, JSON-able) names the data and the model's preprocessing:

* the built-in benchmark: the synthetic val split (``synthetic_val``), generated
  deterministically under ``logs/data/`` on first use;
* real COCO (``coco``): a ``person_keypoints_*.json`` and its images folder, optionally
  sampled to ``max_people`` people.

Its ``identity`` is stored with every AP so numbers on different data never mix.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field

from pose_tuner.accuracy.dataset import IMAGENET_MEAN, IMAGENET_STD

SYNTHETIC_VAL_SEED = 2
SYNTHETIC_VAL_IMAGES = 100
SYNTHETIC_IMAGE_SIZE = (256, 256)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input: channel order, scale and normalisation."""

    mean: tuple[float, ...] = tuple(IMAGENET_MEAN)
    std: tuple[float, ...] = tuple(IMAGENET_STD)
    rgb: bool = True
    scale01: bool = True  # pixels scaled to 0-1 before mean/std (else 0-255)


@dataclass(frozen=True)
class AccuracySpec:
    ann_path: str
    images_dir: str
    identity: str
    max_people: int | None = None
    flip_test: bool = False
    preprocess: Preprocess = field(default_factory=Preprocess)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AccuracySpec":
        d = dict(d)
        d["preprocess"] = Preprocess(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in d.get("preprocess", {}).items()})
        return cls(**d)


def synthetic_val(log_dir: str, n_images: int = SYNTHETIC_VAL_IMAGES,
                  seed: int = SYNTHETIC_VAL_SEED, **kw) -> AccuracySpec:
    """The built-in benchmark: the synthetic val split, generated once under ``log_dir``."""
    from pose_tuner.accuracy.synthetic import generate

    out = os.path.join(log_dir, "data", f"synthetic-val-s{seed}-n{n_images}")
    ann = os.path.join(out, "person_keypoints.json")
    if not os.path.exists(ann):
        tmp = out + ".tmp"
        generate(tmp, n_images, seed=seed, image_size=SYNTHETIC_IMAGE_SIZE)
        os.replace(tmp, out) if not os.path.exists(out) else None
    return AccuracySpec(ann, os.path.join(out, "images"),
                        f"synthetic-val:seed{seed}:n{n_images}", **kw)


def coco(ann_path: str, images_dir: str, max_people: int | None = None, **kw) -> AccuracySpec:
    """Real COCO keypoint data (checked now, so bad data fails before any work)."""
    from pose_tuner.accuracy.dataset import load_coco_keypoints

    people = load_coco_keypoints(ann_path, images_dir, max_people=max_people)
    h = hashlib.sha256(open(ann_path, "rb").read()).hexdigest()[:12]
    ident = f"coco:{os.path.basename(ann_path)}:{h}:n{len(people)}"
    return AccuracySpec(os.path.abspath(ann_path), os.path.abspath(images_dir), ident,
                        max_people=max_people, **kw)


def measure(predict, spec: AccuracySpec, input_hw: tuple[int, int]) -> dict:
    """AP/AP50/AP75/AR/PCK of ``predict`` on the spec's data, as a dict of floats."""
    from pose_tuner.accuracy.dataset import load_coco_keypoints
    from pose_tuner.accuracy.evaluate import evaluate

    people = load_coco_keypoints(spec.ann_path, spec.images_dir, max_people=spec.max_people)
    p = spec.preprocess
    res = evaluate(predict, people, input_size=input_hw, mean=p.mean, std=p.std, rgb=p.rgb,
                   scale01=p.scale01, flip_test=spec.flip_test)
    return {"ap": res.ap, "ap50": res.ap50, "ap75": res.ap75, "ar": res.ar, "pck": res.pck,
            "accuracy_people": res.n_people, "accuracy_dataset": spec.identity}

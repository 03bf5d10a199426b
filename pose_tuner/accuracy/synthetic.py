"""Procedural COCO person-keypoint data: articulated figures on cluttered backgrounds.

``generate(out_dir, n_images, seed)`` writes ``out_dir/images/NNNNNN.jpg`` and
``out_dir/person_keypoints.json`` (COCO ``person_keypoints`` format, 17 COCO
keypoints and skeleton) and returns the JSON path.  Everything is drawn with
PIL + numpy from ``np.random.default_rng([seed, image_index])``, so the output
is a pure function of the arguments (and the PIL/libjpeg versions); image
``i`` does not depend on ``n_images``.

Labels
------
Every drawn pixel is also written to a part-id mask (per person and body
part; occluders get their own id).  A keypoint inside the image is
``v=2`` if the mask at it shows a part of its own person that owns the
keypoint (e.g. the elbow belongs to the upper arm and forearm), else
``v=1`` (occluded but labelled).  Face points turned away from the camera
are ``v=1`` (just behind the silhouette) or ``v=0`` (the back of the head:
not labelled, as COCO annotators do); keypoints outside the image are
``v=0`` with ``x = y = 0``.  ``bbox`` is the tight box around the figure's
drawn geometry, clipped to the image; ``area`` is the figure's visible
pixel count (COCO: the visible segmentation area); ``segmentation`` is the
bbox rectangle as a polygon (placeholder, not used by keypoint eval).

The figures themselves (skeleton, proportions, drawing) are
:mod:`pose_tuner.accuracy.synthetic_figure`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from pose_tuner.accuracy.dataset import COCO_KEYPOINT_NAMES, COCO_SKELETON
from pose_tuner.accuracy.synthetic_figure import (KEYPOINT_OWNERS, MAX_PEOPLE, OCCLUDER, SKIN_TONES,
                                                  Canvas, colour, draw_person, random_pose, shade)

__all__ = ["generate", "render_image", "KEYPOINT_OWNERS"]

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, h: int, w: int):
    from PIL import Image, ImageDraw

    # smooth gradient + low-frequency colour blotches, built at 1/32 scale and upsampled
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    gh, gw = max(2, h // 32), max(2, w // 32)
    t = (np.cos(ang) * np.linspace(0, 1, gw)[None, :] + np.sin(ang) * np.linspace(0, 1, gh)[:, None])
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0 * (1 - t[..., None]) + c1 * t[..., None]
    bg = bg + rng.normal(0, rng.uniform(5, 35), (gh, gw, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)

    d = ImageDraw.Draw(img)
    s = min(h, w)
    for _ in range(int(rng.integers(6, 22))):
        kind = rng.integers(0, 5)
        col = colour(rng)
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        rx, ry = rng.uniform(0.03, 0.3) * s, rng.uniform(0.03, 0.3) * s
        if kind == 0:
            d.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 1:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 2:
            d.line([(cx, cy), (cx + rng.normal(0, rx * 2), cy + rng.normal(0, ry * 2))], fill=col,
                   width=int(rng.integers(1, max(2, s // 20))))
        elif kind == 3:
            n = int(rng.integers(3, 7))
            pts = np.stack([cx + rng.normal(0, rx, n), cy + rng.normal(0, ry, n)], 1)
            d.polygon([tuple(p) for p in pts], fill=col)
        else:   # stripes / grid texture patch
            step = int(rng.integers(3, 9))
            x0, y0 = int(cx - rx), int(cy - ry)
            for k in range(0, int(2 * ry), step):
                d.line([(x0, y0 + k), (x0 + 2 * rx, y0 + k)], fill=col, width=1)
    return img

def _occluders(rng: np.random.Generator, cv: Canvas, people: list[dict], h: int, w: int) -> None:
    for _ in range(int(rng.integers(1, 4))):
        g = people[int(rng.integers(len(people)))]
        c = g["kp"][int(rng.integers(17))] + rng.normal(0, 0.08 * g["h"], 2)
        r = rng.uniform(0.06, 0.2) * g["h"]
        col = colour(rng)
        kind = rng.integers(0, 3)
        if kind == 0:
            cv.blob(c, r, r * rng.uniform(0.5, 1.5), col, OCCLUDER)
        elif kind == 1:
            cv.poly(np.array([c - r, [c[0] + r, c[1] - r], c + r, [c[0] - r, c[1] + r]]) +
                    rng.normal(0, 0.2 * r, (4, 2)), col, OCCLUDER)
        else:
            n = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = r * rng.uniform(0.6, 1.2, n)
            cv.poly(c + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1), col, OCCLUDER)
        if rng.random() < 0.4:   # texture on the occluder
            cv.paint([c - r * 0.7, c + r * 0.7], shade(col, 0.5), max(1, r * 0.1))


def _distractors(rng: np.random.Generator, img, h: int, w: int) -> None:
    """Body-part-like shapes without labels (skin/cloth coloured sticks and ovals)."""
    from PIL import Image

    mask = Image.new("L", (w, h))
    cv = Canvas(img, mask)
    s = min(h, w)
    for _ in range(int(rng.integers(0, 4))):
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        p1 = p0 + rng.normal(0, 0.12 * s, 2)
        col = colour(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 10) if rng.random() < 0.5 \
            else colour(rng)
        if rng.random() < 0.6:
            cv.limb(p0, p1, rng.uniform(0.02, 0.06) * s, col, 0)
        else:
            cv.blob(p0, rng.uniform(0.02, 0.06) * s, rng.uniform(0.03, 0.08) * s, col, 0)


def _finish(rng: np.random.Generator, img):
    """Blur, colour jitter and noise."""
    from PIL import Image, ImageFilter

    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    # saturation, contrast, brightness and per-channel gain as one 3x4 colour matrix
    sat, con = rng.uniform(0.6, 1.3), rng.uniform(0.75, 1.25)
    bright, gain = rng.uniform(-25, 25), rng.uniform(0.9, 1.1, 3)
    lum = np.array([0.299, 0.587, 0.114])
    mix = (1 - sat) * np.tile(lum, (3, 1)) + sat * np.eye(3)
    lin = gain[:, None] * con * mix
    off = gain * (128 * (1 - con) + bright)
    img = img.convert("RGB", tuple(float(v) for v in np.concatenate([lin, off[:, None]], 1).ravel()))
    sigma = rng.uniform(0, 8)
    if sigma > 1.5:
        a = np.asarray(img, dtype=np.int16)
        noise = rng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        img = Image.fromarray(np.clip(a + noise.astype(np.int16), 0, 255).astype(np.uint8))
    return img


# --------------------------------------------------------------------------- one image


def render_image(rng: np.random.Generator, image_size: Sequence[int] = (256, 256),
                 min_people: int = 1, max_people: int = 3, occlusion_prob: float = 0.5):
    """One synthetic image: ``(PIL RGB image, [annotation dicts without ids])``."""
    from PIL import Image

    H, W = int(image_size[0]), int(image_size[1])
    if not 1 <= min_people <= max_people <= MAX_PEOPLE:
        raise ValueError(f"need 1 <= min_people <= max_people <= {MAX_PEOPLE}, got "
                         f"{min_people}, {max_people}")
    img = _background(rng, H, W)
    _distractors(rng, img, H, W)
    mask = Image.new("L", (W, H), 0)
    n = int(rng.integers(min_people, max_people + 1))
    figures: list[dict] = []
    for _ in range(n):
        size = rng.uniform(0.4, 0.95) * H / (1 + 0.25 * (n - 1))
        for _try in range(12):
            hip = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.8) * H])
            g = random_pose(rng, size, hip)
            inside = ((g["kp"][:, 0] >= 0) & (g["kp"][:, 0] < W) & (g["kp"][:, 1] >= 0)
                      & (g["kp"][:, 1] < H) & (g["selfv"] > 0))
            if inside.sum() >= 10:
                break
        else:
            continue   # no placement worked: leave this person out entirely
        figures.append(g)

    extents = []
    for p, g in enumerate(figures):
        cv = Canvas(img, mask)
        draw_person(rng, cv, g, p)
        extents.append((cv.lo.copy(), cv.hi.copy()))
    if figures and rng.random() < occlusion_prob:
        _occluders(rng, Canvas(img, mask), figures, H, W)

    m = np.asarray(mask)
    counts = np.bincount(((m.astype(np.int32) - 1) // 16)[(m > 0) & (m < OCCLUDER)].ravel(),
                         minlength=MAX_PEOPLE + 1)
    anns = []
    for p, g in enumerate(figures):
        kp, selfv = g["kp"], g["selfv"]
        out = np.zeros((17, 3))
        for k in range(17):
            x, y = kp[k]
            if not (0 <= x < W and 0 <= y < H) or selfv[k] == 0:
                continue
            mv = int(m[min(H - 1, int(round(y))), min(W - 1, int(round(x)))])
            owned = mv in {1 + 16 * p + part for part in KEYPOINT_OWNERS[k]}
            v = 2 if (owned and selfv[k] == 2) else 1
            out[k] = (round(float(x), 2), round(float(y), 2), v)
        lo = np.clip(extents[p][0], 0, [W, H])
        hi = np.clip(extents[p][1], 0, [W, H])
        bw, bh = float(hi[0] - lo[0]), float(hi[1] - lo[1])
        nk = int((out[:, 2] > 0).sum())
        if nk == 0 or bw < 2 or bh < 2:
            continue
        bbox = [round(float(lo[0]), 2), round(float(lo[1]), 2), round(bw, 2), round(bh, 2)]
        area = float(counts[p]) if counts[p] > 0 else 0.6 * bw * bh
        x0, y0, x1, y1 = bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]
        anns.append({"bbox": bbox, "area": area, "keypoints": [float(v) for v in out.ravel()],
                     "num_keypoints": nk, "iscrowd": 0, "category_id": 1,
                     "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    return _finish(rng, img), anns


def coco_category() -> dict:
    return {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(s) for s in COCO_SKELETON]}


def generate(out_dir: PathLike, n_images: int, seed: int = 0,
             image_size: Sequence[int] = (256, 256), min_people: int = 1, max_people: int = 3,
             occlusion_prob: float = 0.5, jpeg_quality: int = 90,
             ann_name: str = "person_keypoints.json") -> str:
    """Write ``n_images`` synthetic images (``out_dir/images/000001.jpg`` ...) and their
    COCO person-keypoint annotations (``out_dir/<ann_name>``); returns the JSON path.

    ``image_size`` is (H, W).  Image ids are 1..n, annotation ids 1, 2, ... in
    image order.  Deterministic from (seed, image index).
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    H, W = int(image_size[0]), int(image_size[1])
    images, annotations = [], []
    for i in range(n_images):
        rng = np.random.default_rng([int(seed), i])
        img, anns = render_image(rng, (H, W), min_people, max_people, occlusion_prob)
        name = f"{i + 1:06d}.jpg"
        img.save(img_dir / name, format="JPEG", quality=int(jpeg_quality))
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **a})
    data = {
        "info": {"description": "pose-tuner synthetic person keypoints",
                 "seed": int(seed), "n_images": int(n_images), "image_size": [H, W]},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [coco_category()],
    }
    ann_path = out / ann_name
    with open(ann_path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    return str(ann_path)

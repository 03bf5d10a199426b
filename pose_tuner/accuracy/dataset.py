"""COCO person-keypoint loading and the standard top-down crop.

Conventions
-----------
* Sizes are ``(H, W)`` everywhere in this package (as ``input_size`` in
  :mod:`pose_tuner.models.zoo`); points are ``(x, y)`` in pixels.
* Boxes are COCO ``[x, y, w, h]``.
* ``center`` / ``scale`` follow mmpose 1.x: ``scale`` is the ``(w, h)`` of
  the (padded, aspect-corrected) box in *pixels* (not the old HRNet
  ``/200`` units).
* The affine matrix is the HRNet / mmpose ``get_affine_transform``
  convention (a 2x3 matrix, image pixel -> crop pixel, pixel *indices*, as
  ``cv2.warpAffine`` uses it): the box centre maps to ``(W/2, H/2)`` of the
  crop.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

__all__ = [
    "COCO_KEYPOINT_NAMES",
    "COCO_SKELETON",
    "COCO_FLIP_PAIRS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CocoGroundTruth",
    "PersonInstance",
    "load_coco_keypoints",
    "load_image",
    "box_to_center_scale",
    "get_affine_transform",
    "affine_points",
    "invert_affine",
    "crop",
    "preprocess",
]

PathLike = Union[str, os.PathLike]

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: COCO's skeleton, 1-based keypoint indices (as in the annotation files)
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
    (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)

#: left/right keypoint pairs, 0-based
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)

#: ImageNet statistics on the RGB 0-1 scale (what the zoo models expect)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- loading


@dataclass(eq=False)
class CocoGroundTruth:
    """The parsed annotation file an instance list came from (shared, read-only).

    ``evaluate`` uses it to hand COCOeval *all* person annotations of the
    evaluated images (crowd and keypoint-less ones included), as the
    standard protocol requires.
    """

    ann_path: str
    images: dict[int, dict]                  # image id -> image record
    annotations: list[dict]                  # annotations of the person category
    category: dict                           # the person category (with keypoint names)

    @property
    def category_id(self) -> int:
        return int(self.category["id"])

    @property
    def num_keypoints(self) -> int:
        return len(self.category.get("keypoints") or COCO_KEYPOINT_NAMES)


@dataclass(frozen=True, eq=False)
class PersonInstance:
    """One annotated person: what a top-down evaluation needs."""

    image_path: str
    image_id: int
    ann_id: int
    bbox: tuple[float, float, float, float]     # COCO [x, y, w, h]
    keypoints: np.ndarray = field(repr=False)   # (K, 3) float: x, y, v
    area: float = 0.0
    gt: Optional[CocoGroundTruth] = field(default=None, repr=False)

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


def _bad(path: PathLike, why: str) -> ValueError:
    return ValueError(f"{path}: not a COCO person-keypoints annotation file: {why}")


def _parse_coco(ann_path: PathLike) -> tuple[dict, dict]:
    """Load and validate the JSON; returns (data, person category)."""
    p = Path(ann_path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file {str(p)!r} does not exist")
    try:
        with open(p, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(p, f"it is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise _bad(p, f"the top level is a {type(data).__name__}, expected an object")
    for key in ("annotations", "images", "categories"):
        if not isinstance(data.get(key), list):
            raise _bad(p, f"no {key!r} list (keys present: {sorted(data)})")
    cats = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if not cats:
        raise _bad(p, "no category has a 'keypoints' list (no person keypoint category; "
                      "this looks like a detection/instances file)")
    person = next((c for c in cats if c.get("name") == "person"), cats[0])
    anns = [a for a in data["annotations"] if a.get("category_id") == person["id"]]
    if anns and not any("keypoints" in a for a in anns):
        raise _bad(p, f"none of the {len(anns)} annotations of category {person.get('name')!r} "
                      "has a 'keypoints' field (this looks like a detection/instances file)")
    return data, person


def coco17_view(person: dict, annotations: list[dict], ann_path: str) -> tuple[dict, list[dict]]:
    """The person category and its annotations reduced to the 17 COCO keypoints, when the
    category names more keypoints than COCO's and all 17 COCO names are among them (as in
    Human-Art, whose category lists 21 names). Keypoints are taken by name, in COCO order,
    from annotations holding one triplet per category name; annotations that hold 17
    triplets already hold the COCO ones (Human-Art's ``keypoints``, beside its
    ``keypoints_21``). Other categories are returned unchanged."""
    names = list(person["keypoints"])
    if len(names) <= len(COCO_KEYPOINT_NAMES) or not set(COCO_KEYPOINT_NAMES) <= set(names):
        return person, annotations
    index = [names.index(n) for n in COCO_KEYPOINT_NAMES]
    out = []
    for a in annotations:
        kps = a.get("keypoints")
        if kps is not None and len(kps) == 3 * len(names):
            trip = np.asarray(kps, dtype=np.float64).reshape(len(names), 3)[index]
            a = {**a, "keypoints": trip.ravel().tolist(),
                 "num_keypoints": int((trip[:, 2] > 0).sum())}
        elif kps is not None and len(kps) != 3 * len(COCO_KEYPOINT_NAMES):
            raise ValueError(
                f"{ann_path}: annotation {a.get('id')} has {len(kps) // 3} keypoints "
                f"({len(kps)} numbers); the category {person.get('name')!r} names {len(names)} "
                f"and COCO {len(COCO_KEYPOINT_NAMES)}")
        out.append(a)
    category = {k: v for k, v in person.items() if k != "skeleton"}
    category["keypoints"] = list(COCO_KEYPOINT_NAMES)
    category["skeleton"] = [list(s) for s in COCO_SKELETON]
    return category, out


def load_image(path: PathLike) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_coco_keypoints(ann_path: PathLike, images_dir: PathLike,
                        max_people: Optional[int] = None) -> list[PersonInstance]:
    """Person instances of a COCO keypoint file, ready for top-down evaluation.

    Keeps annotations of the person category with ``iscrowd == 0`` and
    ``num_keypoints > 0``, ordered by (image id, annotation id). A category with more
    keypoints than COCO's that names all 17 COCO ones is read as COCO
    (:func:`coco17_view`).

    ``max_people`` caps the number of instances but never splits an image
    (an image's unpredicted people would count as misses in AP): images are
    taken whole, in id order, while they fit; images that would overflow
    the cap are skipped.

    Raises ``FileNotFoundError`` for a missing annotation file and
    ``ValueError`` for a file that is not COCO keypoints, a missing images
    directory or image files (naming the first missing one and the count),
    a keypoint count that disagrees with the category, or an empty result.
    """
    data, person = _parse_coco(ann_path)
    ann_path = str(ann_path)
    images = {}
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise _bad(ann_path, f"an image record lacks 'id'/'file_name': {im!r:.200}")
        images[int(im["id"])] = im
    person, person_anns = coco17_view(
        person, [a for a in data["annotations"] if a.get("category_id") == person["id"]],
        ann_path)
    num_kp = len(person["keypoints"])

    by_image: dict[int, list[dict]] = {}
    for a in person_anns:
        kps = a.get("keypoints")
        if kps is None:
            continue
        if len(kps) != 3 * num_kp:
            raise ValueError(
                f"{ann_path}: annotation {a.get('id')} has {len(kps) // 3} keypoints "
                f"({len(kps)} numbers), the category {person.get('name')!r} defines {num_kp}")
        n = a.get("num_keypoints")
        if n is None:
            n = int((np.asarray(kps[2::3]) > 0).sum())
        if int(n) <= 0 or int(a.get("iscrowd", 0)):
            continue
        if int(a["image_id"]) not in images:
            raise _bad(ann_path, f"annotation {a.get('id')} refers to image id {a['image_id']} "
                                 "which is not in 'images'")
        by_image.setdefault(int(a["image_id"]), []).append(a)

    if not by_image:
        raise ValueError(
            f"{ann_path}: empty set: no annotation of category {person.get('name')!r} with "
            f"num_keypoints > 0 and iscrowd == 0 (of {len(person_anns)} annotations of that "
            f"category, {len(data['annotations'])} in all)")

    chosen: list[int] = []
    total = 0
    for img_id in sorted(by_image):
        n = len(by_image[img_id])
        if max_people is not None and total + n > max_people:
            continue
        chosen.append(img_id)
        total += n
    if not chosen:
        raise ValueError(
            f"{ann_path}: empty set: max_people={max_people} is smaller than the number of "
            f"people in every image (smallest: {min(len(v) for v in by_image.values())})")

    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise ValueError(f"images directory {str(images_dir)!r} does not exist "
                         f"(needed for the {len(chosen)} images of {ann_path})")
    missing = [images[i]["file_name"] for i in chosen
               if not (images_dir / images[i]["file_name"]).is_file()]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(chosen)} image files are missing from {str(images_dir)!r}; "
            f"first missing: {missing[0]!r}")

    gt = CocoGroundTruth(ann_path=ann_path, images=images, annotations=person_anns,
                         category=person)
    out: list[PersonInstance] = []
    for img_id in chosen:
        for a in sorted(by_image[img_id], key=lambda a: a["id"]):
            x, y, w, h = (float(v) for v in a["bbox"])
            out.append(PersonInstance(
                image_path=str(images_dir / images[img_id]["file_name"]),
                image_id=img_id,
                ann_id=int(a["id"]),
                bbox=(x, y, w, h),
                keypoints=np.asarray(a["keypoints"], dtype=np.float64).reshape(num_kp, 3),
                area=float(a.get("area", w * h)),
                gt=gt,
            ))
    return out


# --------------------------------------------------------------------------- crop


def box_to_center_scale(bbox: Sequence[float], aspect: float,
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """COCO box -> (center (2,), scale (2,) = padded (w, h) in pixels).

    The box is grown to the aspect ratio ``aspect = W / H`` of the model
    input, then by ``padding`` (mmpose ``bbox_xywh2cs`` + ``fix_aspect_ratio``).
    """
    x, y, w, h = (float(v) for v in bbox)
    if not (w > 0 and h > 0):
        raise ValueError(f"degenerate box {list(bbox)} (width and height must be > 0)")
    if not aspect > 0:
        raise ValueError(f"aspect must be > 0, got {aspect}")
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float64)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float64) * padding


def _rotate(pt: np.ndarray, rad: float) -> np.ndarray:
    s, c = math.sin(rad), math.cos(rad)
    return np.array([pt[0] * c - pt[1] * s, pt[0] * s + pt[1] * c])


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]])


def _solve_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping the three ``src`` points onto ``dst`` (cv2.getAffineTransform)."""
    a = np.concatenate([src, np.ones((3, 1))], axis=1)   # (3, 3)
    return np.linalg.solve(a, dst).T                     # (2, 3)


def get_affine_transform(center: Sequence[float], scale: Sequence[float],
                         out_size: Sequence[int], rot: float = 0.0,
                         shift: Sequence[float] = (0.0, 0.0), inv: bool = False) -> np.ndarray:
    """HRNet / mmpose ``get_affine_transform`` (2x3, float64).

    ``scale`` is the source box (w, h) in pixels, ``out_size`` is ``(H, W)``
    (note: (H, W) as everywhere in this package), ``rot`` in degrees.  The
    matrix maps image pixels to crop pixels (``inv=True``: the reverse).
    """
    out_h, out_w = float(out_size[0]), float(out_size[1])
    center = np.asarray(center, dtype=np.float64)
    shift = np.asarray(shift, dtype=np.float64)
    src_w = float(scale[0])
    rad = math.radians(rot)
    src_dir = _rotate(np.array([0.0, src_w * -0.5]), rad)
    dst_dir = np.array([0.0, out_w * -0.5])
    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = center + np.asarray(scale, dtype=np.float64) * shift
    src[1] = src[0] + src_dir
    dst[0] = [out_w * 0.5, out_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return _solve_affine(dst, src) if inv else _solve_affine(src, dst)


def invert_affine(m: np.ndarray) -> np.ndarray:
    full = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def affine_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points (..., 2)."""
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ np.asarray(m, dtype=np.float64)[:, :2].T + np.asarray(m)[:, 2]


def crop(image: Any, center: Sequence[float], scale: Sequence[float],
         out_size: Sequence[int], rot: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp the box (center, scale) of ``image`` to an ``out_size`` = (H, W) patch.

    ``image`` is an RGB uint8 array (H, W, 3) or a PIL image.  Bilinear
    sampling, black outside the image; same result as
    ``cv2.warpAffine(image, M, (W, H), flags=INTER_LINEAR)``.
    Returns ``(patch uint8 (H, W, 3), M)`` with ``M`` the 2x3 image->patch matrix.
    """
    from PIL import Image

    out_h, out_w = int(out_size[0]), int(out_size[1])
    m = get_affine_transform(center, scale, (out_h, out_w), rot=rot)
    inv = invert_affine(m)
    # PIL samples output pixel (i, j) at inv @ (i + .5, j + .5) in a pixel-*edge* frame and
    # removes the 0.5 for bilinear; conjugate by the half-pixel shift to match cv2's
    # pixel-*centre* convention: coeffs = T(+.5) . inv . T(-.5)
    lin = inv[:, :2]
    off = inv[:, 2] - lin @ np.array([0.5, 0.5]) + 0.5
    coeffs = (lin[0, 0], lin[0, 1], off[0], lin[1, 0], lin[1, 1], off[1])
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    patch = pil.transform((out_w, out_h), Image.AFFINE, coeffs, resample=Image.BILINEAR,
                          fillcolor=(0, 0, 0))
    return np.asarray(patch), m


def preprocess(patch: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, rgb: bool = True,
               scale01: bool = True) -> np.ndarray:
    """RGB uint8 patch (H, W, 3) -> normalised float32 (3, H, W).

    ``rgb=False`` feeds BGR channel order (``mean``/``std`` are then given in
    BGR order too: they apply to the channels as fed); ``scale01`` divides by
    255 first (then ``mean``/``std`` are on the 0-1 scale, as for the zoo
    models).
    """
    x = np.asarray(patch, dtype=np.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"patch must be (H, W, 3), got shape {x.shape}")
    if not rgb:
        x = x[:, :, ::-1]
    if scale01:
        x = x * np.float32(1.0 / 255.0)
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
    std = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

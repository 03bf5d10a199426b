"""Top-down keypoint accuracy with ground-truth boxes: COCO OKS AP and PCK.

``predict`` is any backend: a function ``(1, 3, H, W) float32 -> output``
(numpy / torch / TVM tensors or a tuple of them), e.g. ``LocalVM(path).run``,
an onnxruntime session wrapped in a lambda, or a torch module under
``torch.no_grad()``.  With ``with_meta=True`` it is called as
``predict(x, meta)`` with the :class:`CropMeta` of the crop (used by tests to
build an oracle from the ground truth).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from pose_tuner.accuracy.dataset import (COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_SKELETON, IMAGENET_MEAN,
                      IMAGENET_STD, PersonInstance, affine_points, box_to_center_scale, crop,
                      invert_affine, load_image, preprocess)
from pose_tuner.accuracy.decode import Decoder, get_decoder, output_shapes, to_numpy

__all__ = ["AccuracyResult", "CropMeta", "evaluate", "crop_instance", "pck_thresholds",
           "KPT_SCORE_THR", "PCK_THR"]

#: keypoint scores above this count towards the instance score (mmpose top-down rescoring)
KPT_SCORE_THR = 0.2
#: PCK: correct if distance < PCK_THR * head size
PCK_THR = 0.5
#: ear 3 and 4 (0-based) of COCO
_LEFT_EAR, _RIGHT_EAR = 3, 4


@dataclass(frozen=True)
class AccuracyResult:
    ap: float       # OKS AP@[.5:.95] (COCOeval stats[0])
    ap50: float
    ap75: float
    ar: float       # OKS AR@[.5:.95] (stats[5])
    pck: float      # PCK@0.5 head size (see pck_thresholds), over labelled keypoints
    n_people: int   # instances predicted

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class CropMeta:
    """What ``predict(x, meta)`` is told about the crop it is fed."""

    instance: PersonInstance
    center: np.ndarray
    scale: np.ndarray
    affine: np.ndarray            # 2x3, image pixels -> model-input pixels (flip included)
    input_size: tuple[int, int]   # (H, W)
    flipped: bool                 # the input is the horizontally flipped crop


def crop_instance(instance: PersonInstance, input_size: Sequence[int], image: np.ndarray = None,
                  padding: float = 1.25) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top-down crop of one instance: ``(patch uint8 (H, W, 3), affine 2x3, center, scale)``."""
    h, w = int(input_size[0]), int(input_size[1])
    center, scale = box_to_center_scale(instance.bbox, aspect=w / h, padding=padding)
    if image is None:
        image = load_image(instance.image_path)
    patch, m = crop(image, center, scale, (h, w))
    return patch, m, center, scale


def pck_thresholds(keypoints: np.ndarray, bbox: Sequence[float], thr: float = PCK_THR) -> float:
    """The PCK distance threshold (image pixels) of one instance.

    Rule: ``thr * head_size``, where ``head_size`` is the distance between the
    two ears when both are labelled (v > 0), floored at 0.05 x the box
    diagonal (so a profile view with nearly coincident ears does not demand
    sub-pixel precision), and 0.1 x the box diagonal otherwise (about the
    ear-to-ear distance of an upright person: ears ~15 cm, height ~170 cm,
    box diagonal ~1.05 height).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    diag = math.hypot(float(bbox[2]), float(bbox[3]))
    if kp[_LEFT_EAR, 2] > 0 and kp[_RIGHT_EAR, 2] > 0:
        head = max(float(np.hypot(*(kp[_LEFT_EAR, :2] - kp[_RIGHT_EAR, :2]))), 0.05 * diag)
    else:
        head = 0.1 * diag
    return thr * head


def _check_norm(mean: Sequence[float], std: Sequence[float], scale01: bool) -> None:
    mean = np.asarray(mean, dtype=np.float64).ravel()
    std = np.asarray(std, dtype=np.float64).ravel()
    if mean.shape != (3,) or std.shape != (3,):
        raise ValueError(f"mean and std need 3 values each, got {mean.tolist()} and {std.tolist()}")
    if not (std > 0).all():
        raise ValueError(f"std must be > 0, got {std.tolist()}")
    if scale01 and (mean.max() > 1.5 or std.max() > 1.5):
        raise ValueError(f"mean {mean.tolist()} / std {std.tolist()} look like 0-255 statistics "
                         "but scale01=True divides pixels by 255 first; pass 0-1 statistics "
                         "(e.g. IMAGENET_MEAN/IMAGENET_STD) or scale01=False")
    if not scale01 and 0 < mean.max() <= 1.5 and std.max() <= 1.5:
        raise ValueError(f"mean {mean.tolist()} / std {std.tolist()} look like 0-1 statistics "
                         "but scale01=False feeds 0-255 pixels; pass scale01=True or 0-255 "
                         "statistics")


def _build_gt(instances: Sequence[PersonInstance]) -> tuple[dict, int]:
    """The COCO GT dataset dict for the instances' images, and the category id.

    With instances from :func:`load_coco_keypoints`, *all* person
    annotations of those images (crowd and keypoint-less included) go in,
    so COCOeval's ignore/crowd handling is the standard one.  Instances
    built by hand (``gt`` None) become the annotations themselves.
    """
    sources = {id(i.gt): i.gt for i in instances}
    img_ids = sorted({int(i.image_id) for i in instances})
    if len(sources) > 1:
        raise ValueError(f"instances come from {len(sources)} different annotation files; "
                         "evaluate one dataset at a time")
    gt = next(iter(sources.values()))
    if gt is None:
        from PIL import Image

        images, anns = {}, []
        for inst in instances:
            if inst.image_id not in images:
                with Image.open(inst.image_path) as im:
                    w, h = im.size
                images[inst.image_id] = {"id": inst.image_id, "file_name": inst.image_path,
                                         "width": w, "height": h}
            x, y, bw, bh = inst.bbox
            anns.append({"id": inst.ann_id, "image_id": inst.image_id, "category_id": 1,
                         "bbox": list(inst.bbox), "area": inst.area or bw * bh, "iscrowd": 0,
                         "keypoints": inst.keypoints.ravel().tolist(),
                         "num_keypoints": inst.num_keypoints})
        cat = {"id": 1, "name": "person", "supercategory": "person",
               "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(s) for s in COCO_SKELETON]}
        return {"images": [images[i] for i in img_ids], "annotations": anns,
                "categories": [cat]}, 1

    wanted = set(img_ids)
    anns = []
    for a in gt.annotations:
        if int(a["image_id"]) not in wanted:
            continue
        a = dict(a)
        kps = a.get("keypoints") or [0.0] * (3 * gt.num_keypoints)
        a["keypoints"] = kps
        a.setdefault("num_keypoints", int((np.asarray(kps[2::3]) > 0).sum()))
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
        anns.append(a)
    return {"images": [gt.images[i] for i in img_ids], "annotations": anns,
            "categories": [gt.category]}, gt.category_id


def _coco_eval(gt_dict: dict, results: list[dict], cat_id: int) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.useCats = 1
        ev.params.catIds = [cat_id]
        ev.params.imgIds = sorted(int(i["id"]) for i in gt_dict["images"])
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def evaluate(predict: Callable[..., Any], instances: Sequence[PersonInstance],
             input_size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD, rgb: bool = True, flip_test: bool = False,
             flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS, *,
             scale01: bool = True, with_meta: bool = False, decoder: Optional[Decoder] = None,
             padding: float = 1.25, num_keypoints: int = 17, pck_thr: float = PCK_THR,
             results_out: Optional[list] = None) -> AccuracyResult:
    """Top-down OKS AP / AR (pycocotools) and PCK of ``predict`` on ``instances``.

    Each instance is cropped with its GT box (padded 1.25, aspect of
    ``input_size`` = (H, W)), normalised (``mean``/``std`` in the channel
    order fed, 0-1 scale when ``scale01``), run through ``predict`` (and its
    horizontal flip when ``flip_test``: outputs averaged after flip-back),
    decoded (``decoder``, or :func:`get_decoder` from the first output's
    shapes) and mapped back to image pixels.  Instance score = mean of the
    keypoint scores above 0.2 (0 if none), as mmpose's top-down rescoring
    with GT boxes (box score 1).

    AP/AP50/AP75/AR are COCOeval ``keypoints`` on the instances' images with
    ``useCats``; the GT holds every person annotation of those images.
    PCK is over labelled (v > 0) GT keypoints, threshold
    :func:`pck_thresholds`.  ``results_out``, if a list, receives the COCO
    result dicts.

    Raises ``ValueError`` for no instances, bad normalisation statistics,
    and (from the decoder) outputs with the wrong keypoint count, NaN/Inf or
    undecodable shapes; ``RuntimeError`` if COCOeval finds no GT to score.
    """
    instances = list(instances)
    if not instances:
        raise ValueError("evaluate: no instances to evaluate (empty set)")
    if len(input_size) != 2 or int(input_size[0]) <= 0 or int(input_size[1]) <= 0:
        raise ValueError(f"input_size must be (H, W) > 0, got {input_size!r}")
    in_h, in_w = int(input_size[0]), int(input_size[1])
    _check_norm(mean, std, scale01)
    for inst in instances:
        if inst.keypoints.shape != (num_keypoints, 3):
            raise ValueError(f"instance {inst.ann_id} has keypoints of shape "
                             f"{inst.keypoints.shape}, expected ({num_keypoints}, 3)")

    flip_m = np.array([[-1.0, 0.0, in_w - 1.0], [0.0, 1.0, 0.0]])   # x -> W-1-x (array flip)
    cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
    results, correct, labelled = [], 0, 0
    all_constant = True

    def run(x: np.ndarray, meta: CropMeta) -> Any:
        out = predict(x, meta) if with_meta else predict(x)
        return to_numpy(out)

    for inst in instances:
        image = cache.get(inst.image_path)
        if image is None:
            image = load_image(inst.image_path)
            cache[inst.image_path] = image
            if len(cache) > 4:
                cache.popitem(last=False)
        patch, m, center, scale = crop_instance(inst, (in_h, in_w), image, padding)
        x = preprocess(patch, mean, std, rgb=rgb, scale01=scale01)[None]
        out = run(x, CropMeta(inst, center, scale, m, (in_h, in_w), False))
        if decoder is None:
            decoder = get_decoder(output_shapes(out), (in_h, in_w), num_keypoints)
        if flip_test:
            xf = np.ascontiguousarray(x[..., ::-1])
            outf = run(xf, CropMeta(inst, center, scale, _compose(flip_m, m), (in_h, in_w), True))
            back = decoder.flip_back(outf, flip_pairs)
            out = decoder.check(out)
            if isinstance(out, list):
                out = [0.5 * (a + b) for a, b in zip(out, back)]
            else:
                out = 0.5 * (out + back)
        pts, scores = decoder.decode(out)
        if all_constant:
            arrs = out if isinstance(out, list) else [out]
            all_constant = all(float(np.ptp(a)) == 0.0 for a in arrs)
        img_pts = affine_points(invert_affine(m), pts)

        mask = scores > KPT_SCORE_THR
        score = float(scores[mask].mean()) if mask.any() else 0.0
        kps = np.concatenate([img_pts, scores[:, None]], axis=1)
        results.append({"image_id": int(inst.image_id), "category_id": 1,
                        "keypoints": [float(v) for v in kps.ravel()], "score": score})

        gt = inst.keypoints
        lab = gt[:, 2] > 0
        if lab.any():
            d = np.hypot(*(img_pts[lab] - gt[lab, :2]).T)
            correct += int((d < pck_thresholds(gt, inst.bbox, pck_thr)).sum())
            labelled += int(lab.sum())

    if all_constant:
        warnings.warn("evaluate: every model output was constant (all pixels equal); "
                      "the predictions are meaningless", RuntimeWarning, stacklevel=2)

    gt_dict, cat_id = _build_gt(instances)
    for r in results:
        r["category_id"] = cat_id
    if results_out is not None:
        results_out.extend(results)
    stats = _coco_eval(gt_dict, results, cat_id)
    if stats[0] < 0:
        raise RuntimeError("COCOeval found no ground truth to score (every GT annotation of the "
                           "evaluated images is crowd or has no labelled keypoints)")
    return AccuracyResult(ap=float(stats[0]), ap50=float(stats[1]), ap75=float(stats[2]),
                          ar=float(stats[5]), pck=correct / labelled if labelled else float("nan"),
                          n_people=len(instances))


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine ``a o b`` (apply b, then a)."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(a) @ full(b))[:2]

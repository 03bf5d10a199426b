"""Calibration inputs for post-training quantization (TVM int8 and the INT8 baselines)."""

from __future__ import annotations

import numpy as np

#: the synthetic split calibration crops come from: its own seed, never the val split (2)
CALIBRATION_SEED = 3


def calibration_inputs(model, n: int = 16, seed: int = 1000) -> np.ndarray:
    """``n`` preprocessed model inputs, shape (n, C, H, W), float32.

    Image-like structured inputs (:func:`pose_tuner.measure.inputs.structured_input`) with the
    model's input shape; deterministic from ``seed``. For models with no data to
    calibrate on; :func:`calibration_crops` gives real person crops.
    """
    from pose_tuner.measure.inputs import structured_input

    shape = (1, *model.input_shape[1:])
    return np.concatenate([structured_input(shape, seed=seed + i) for i in range(n)])


def calibration_crops(input_hw: tuple[int, int], n: int, log_dir: str,
                      preprocess=None) -> np.ndarray:
    """``n`` top-down person crops (n, 3, H, W) float32 from a synthetic split generated
    for calibration (seed :data:`CALIBRATION_SEED`, disjoint from the val split), cropped
    and normalised exactly as the accuracy evaluation feeds the model."""
    from pose_tuner.accuracy.benchmark import Preprocess, synthetic_val
    from pose_tuner.accuracy.dataset import load_coco_keypoints, load_image, preprocess as prep
    from pose_tuner.accuracy.evaluate import crop_instance

    pre = preprocess or Preprocess()
    spec = synthetic_val(log_dir, n_images=max(8, n), seed=CALIBRATION_SEED)  # >= 1 person each
    people = load_coco_keypoints(spec.ann_path, spec.images_dir)[:n]
    if len(people) < n:
        raise ValueError(f"the calibration split has {len(people)} people, {n} asked")
    out, cache = [], {}
    for p in people:
        img = cache.get(p.image_path)
        if img is None:
            img = cache[p.image_path] = load_image(p.image_path)
        patch = crop_instance(p, input_hw, image=img)[0]
        out.append(prep(patch, mean=pre.mean, std=pre.std, rgb=pre.rgb, scale01=pre.scale01))
    return np.stack(out).astype(np.float32)

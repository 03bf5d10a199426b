"""Calibration inputs for post-training quantization (baselines and, later, TVM int8)."""

from __future__ import annotations

import numpy as np


def calibration_inputs(model, n: int = 16, seed: int = 1000) -> np.ndarray:
    """``n`` preprocessed model inputs, shape (n, C, H, W), float32.

    Image-like structured inputs (:func:`targets.inputs.structured_input`) with the
    model's input shape; deterministic from ``seed``.
    """
    from targets.inputs import structured_input

    shape = (1, *model.input_shape[1:])
    return np.concatenate([structured_input(shape, seed=seed + i) for i in range(n)])

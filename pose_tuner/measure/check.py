"""Numerical check of a compiled artifact against the reference model's outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class NumericalMismatch(RuntimeError):
    pass


@dataclass(frozen=True)
class CheckResult:
    max_abs_err: float
    rel_err: float  # max abs error / max abs reference value
    ref_spatial_std: float  # mean over channels of the reference's spatial std / its scale


def _errors(out: np.ndarray, ref: np.ndarray) -> CheckResult:
    """Shape and finiteness checks, then the error figures (raises on the former)."""
    if out.shape != ref.shape:
        raise NumericalMismatch(f"output shape {out.shape} differs from reference {ref.shape}")
    if not np.all(np.isfinite(out)):
        raise NumericalMismatch("compiled output contains NaN or Inf")
    scale = float(np.abs(ref).max()) or 1.0
    err = float(np.abs(out.astype(np.float64) - ref.astype(np.float64)).max())
    flat = ref.reshape(ref.shape[0] * ref.shape[1], -1) if ref.ndim >= 3 else ref.reshape(1, -1)
    return CheckResult(err, err / scale, float(flat.std(axis=1).mean() / scale))


def compare(out: np.ndarray, ref: np.ndarray, rtol: float = 1e-3) -> CheckResult:
    """Raise :class:`NumericalMismatch` unless ``out`` matches ``ref`` to ``rtol``.

    Also refuses a reference that does not vary over space: agreeing with a constant
    proves nothing about the kernels.
    """
    res = _errors(out, ref)
    spatial = res.ref_spatial_std
    err = res.max_abs_err
    if spatial < 1e-4:
        raise NumericalMismatch(
            f"reference heatmaps are constant over space (relative std {spatial:.1e}); "
            "the numerical check would prove nothing"
        )
    if res.rel_err > rtol:
        raise NumericalMismatch(
            f"compiled output differs from the reference: max abs error {err:.3g} "
            f"({res.rel_err:.2%} of the output range, tolerance {rtol:.2%})"
        )
    return res


def compare_approx(out: np.ndarray, ref: np.ndarray, min_corr: float = 0.75,
                   max_rel: float = 1.0) -> CheckResult:
    """Looser check for reduced precision (bf16/fp16/int8): it catches broken kernels
    (garbage correlates ~0 with the reference), not precision loss. The outputs must
    correlate with the reference (Pearson >= ``min_corr``) and stay within ``max_rel`` of
    its range. Untrained random-weight models amplify int8 rounding through every layer
    (correlation ~0.85 seen on a 64x64 ShuffleNet); accuracy (AP), not this check,
    judges how much a trained model loses."""
    res = _errors(out, ref)
    corr = float(np.corrcoef(out.ravel().astype(np.float64), ref.ravel().astype(np.float64))[0, 1])
    if not corr >= min_corr or res.rel_err > max_rel:
        raise NumericalMismatch(
            f"reduced-precision output strays from the reference: correlation {corr:.3f} "
            f"(min {min_corr}), max error {res.rel_err:.1%} of the range (max {max_rel:.0%})"
        )
    return res

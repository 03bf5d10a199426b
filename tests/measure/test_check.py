import numpy as np
import pytest

from pose_tuner.measure.check import NumericalMismatch, compare
from pose_tuner.measure.inputs import structured_input


def test_matching_outputs_pass_and_report_errors():
    ref = structured_input((1, 4, 8, 6), seed=0)
    res = compare(ref + 1e-6, ref)
    assert res.max_abs_err == pytest.approx(1e-6, rel=0.1)
    assert res.ref_spatial_std > 0.1


def test_wrong_outputs_fail():
    ref = structured_input((1, 4, 8, 6), seed=0)
    bad = ref.copy()
    bad[0, 1, 2, 3] += 0.5
    with pytest.raises(NumericalMismatch, match="differs from the reference"):
        compare(bad, ref)


def test_constant_reference_is_refused():
    ref = np.ones((1, 4, 8, 6), np.float32)
    with pytest.raises(NumericalMismatch, match="constant over space"):
        compare(ref, ref)


def test_nan_and_shape_mismatch_fail():
    ref = structured_input((1, 2, 4, 4))
    bad = ref.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(NumericalMismatch, match="NaN"):
        compare(bad, ref)
    with pytest.raises(NumericalMismatch, match="shape"):
        compare(ref[:, :1], ref)


def test_structured_inputs_are_deterministic_and_vary():
    a, b = structured_input((1, 3, 16, 12), 1), structured_input((1, 3, 16, 12), 1)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, structured_input((1, 3, 16, 12), 2))
    assert a.dtype == np.float32 and 0.9 < a.std() < 1.1

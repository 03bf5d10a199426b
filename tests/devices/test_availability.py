"""Whether this machine can measure on a target: a pool's tracker, devices and probe."""

import pytest

from pose_tuner.devices.availability import check_available
from pose_tuner.hardware import TargetUnavailable, get_target


def test_rasp4b_with_an_unreachable_tracker_says_so():
    import time

    t = time.time()
    with pytest.raises(TargetUnavailable) as e:
        check_available(get_target("rasp4b", tracker="127.0.0.1:1"))
    assert "cannot reach the RPC tracker at 127.0.0.1:1" in str(e.value)
    assert time.time() - t < 30


def test_rasp4b_key_without_devices_says_how_to_attach_one_under_it(local_devices):
    with pytest.raises(TargetUnavailable, match="no device under key 'nobody'") as e:
        check_available(get_target("rasp4b", tracker=local_devices, rpc_key="nobody"))
    assert "--key nobody` there" in str(e.value) and "`--rpc-key nobody`" in str(e.value)
    assert "tuner device emulate rasp4b --key nobody" in str(e.value)


def test_cuda_over_rpc_checks_the_pool(local_devices):
    """`--target cuda --tracker ...`: a key with no device, and a device without a GPU
    (this machine's TVM RPC server), each fail before any work with their own message;
    the probe library was built for CUDA here and linked for the device."""
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    empty = get_target("cuda", tracker=local_devices, rpc_key="nobody")
    assert empty.remote and empty.rpc_spec().device == "cuda"
    with pytest.raises(TargetUnavailable, match="no device under key 'nobody'"):
        check_available(empty)
    no_gpu = get_target("cuda", tracker=local_devices, rpc_key="plain")
    with pytest.raises(TargetUnavailable, match="has no cuda device that TVM can use"):
        check_available(no_gpu)
    assert "GPU over RPC, key plain" in no_gpu.device_identity()
    from pose_tuner.baselines import BaselineUnavailable, get_baseline

    with pytest.raises(BaselineUnavailable, match="not over RPC"):
        get_baseline("tensorrt-fp16").check_available(no_gpu)

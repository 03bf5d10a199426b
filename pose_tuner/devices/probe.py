"""A probe of a device pool: a tiny module built here, run on one of its devices.

It proves the pool answers and that its TVM runtime loads this host's artifacts; it sits
above both the compile pipeline (it builds) and measurement (it runs over RPC).
"""

from __future__ import annotations

from pose_tuner.hardware.remote import RPCError, RPCSpec
from pose_tuner.measure.rpc import connect, export_cross


def probe(target, spec: RPCSpec) -> None:
    """Run a tiny module built here on a device of the pool: proves the pool answers and
    its TVM runtime loads this host's artifacts (same TVM version), else an error that
    says which part failed (:class:`RPCError`). ``target`` is the
    :class:`pose_tuner.hardware.base.Target` whose pool ``spec`` is."""
    import os
    import tempfile

    import numpy as np
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    from pose_tuner.compile.pipeline import compile_module

    @tvm.script.ir_module
    class Probe:
        @R.function
        def main(x: R.Tensor((4,), "float32")) -> R.Tensor((4,), "float32"):
            return R.add(x, x)

    ex = compile_module(Probe, tvm.target.Target(target.tvm_target()))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_cross(ex, os.path.join(tmp, "probe.so"), spec.cross_cc)
        sess = connect(spec, timeout_s=120)
        dev = spec.remote_device(sess)
        if spec.device != "cpu" and not dev.exist:
            raise RPCError(
                f"the device of key {spec.key!r} at {spec.tracker} has no {spec.device} device "
                f"that TVM can use (no GPU there, or its TVM lacks the CUDA runtime: "
                f"`python -c 'import tvm; print(tvm.cuda(0).exist)'` on it should print True)")
        wrong = target.device_mismatch(dev, f"the device of key {spec.key!r} at {spec.tracker}")
        if wrong:
            raise RPCError(wrong)
        try:
            sess.upload(path)
            vm = relax.VirtualMachine(sess.load_module("probe.so"), dev)
            x = np.arange(4, dtype="float32")
            got = vm["main"](tvm.runtime.tensor(x, dev)).numpy()
        except Exception as exc:  # noqa: BLE001
            what = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]}"
            raise RPCError(
                f"a device of key {spec.key!r} cannot run an artifact built here ({what}); its "
                f"TVM runtime probably differs from this host's (apache-tvm {tvm.__version__}): "
                "install the same version on the device") from None
        if not np.allclose(got, 2 * x):
            raise RPCError(f"a device of key {spec.key!r} computed {got} for 2*{x}: broken runtime")

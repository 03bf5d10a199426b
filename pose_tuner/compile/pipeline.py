"""The build pipeline: an imported Relax module to a VM executable.

The stages, each a function so that tests and the benchmarks can call them alone:

1. :func:`pose_tuner.compile.frontend.import_onnx` (and for int8,
   :func:`pose_tuner.compile.int8.rewrite.integer_rewrite`);
2. :func:`prepare` – inference simplifications, :class:`SubPixelConvTranspose`, then
   legalization and fusion, giving the TIR functions MetaSchedule tunes;
3. optionally :func:`pose_tuner.compile.tuning.tune` – MetaSchedule over the tasks of the
   prepared module, into a tuning database;
4. :func:`compile_module` – apply the database (if any) and build a VM executable.

What differs per kind of target (code generation, default schedules, intrinsics) is the
target's compile backend (:func:`pose_tuner.compile.backends.backend_for`). The caller runs
all of this in a child process with a timeout, so a crash here costs one candidate.
"""

from __future__ import annotations

import tvm
from tvm import relax

from pose_tuner.compile.backends import backend_for
from pose_tuner.compile.relax_passes import SubPixelConvTranspose
from pose_tuner.compile.tuning import open_database, recorded_kernels


def prepare(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Simplify for inference, rewrite deconvolutions, legalize and fuse into TIR.

    Weight buffers are marked layout-free (``AttachAttrLayoutFreeBuffers``) so that
    MetaSchedule may choose a packed weight layout for each conv; :func:`compile_module`
    then rewrites the constant weights into it once, at build time. On this machine that
    made a 128-trial tuned MobileNetV2 pose model 1.4x faster (72.7 -> 50.4 ms).
    """
    with target:
        return tvm.transform.Sequential(
            [
                relax.transform.DecomposeOpsForInference(),
                relax.transform.CanonicalizeBindings(),
                # folds dequantize(const) weights of QDQ models, so the rewrite sees them
                relax.transform.FoldConstant(),
                SubPixelConvTranspose(),
                relax.transform.FoldConstant(),
                relax.transform.LegalizeOps(),
                relax.transform.AnnotateTIROpPattern(),
                relax.transform.FoldConstant(),
                relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
                relax.transform.AttachAttrLayoutFreeBuffers(),
            ]
        )(mod)


def compile_module(
    mod: tvm.IRModule, target: tvm.target.Target, work_dir: str | None = None
) -> relax.VMExecutable:
    """Build a prepared module; with ``work_dir``, apply its tuning database first and
    fold the weight-layout rewrites the chosen schedules ask for into the constants.

    The tensor intrinsics registered for the records are the int8 kernels they name
    (:func:`pose_tuner.compile.tuning.recorded_kernels`): a database holds the records of
    one target, so these are that target's own kernel, if it has one."""
    backend = backend_for(target)
    if work_dir is not None:
        backend.load_tensor_intrinsics(target)
        backend.register_intrinsics(recorded_kernels(work_dir))
        db = open_database(work_dir)
        with target, db, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
            mod = tvm.transform.Sequential([
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.LiftTransformParams(),
                relax.transform.FoldConstant(),
                # the folded weights come back as a tuple of constants that main would
                # build and take apart on every call (~250 VM calls per inference of
                # the int8 default model); bind them directly
                relax.transform.CanonicalizeBindings(),
                relax.transform.DeadCodeElimination(),
            ])(mod)
    backend.enable_codegen()
    mod = backend.prepare_for_device(mod, target)
    return backend.build(mod, target)

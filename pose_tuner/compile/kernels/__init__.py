"""x86 int8 dot-product kernels: one registry, one file per instruction family.

Targets name their kernel (``Target.int8_kernel``); the CPU compile backend registers that
kernel's intrinsic before tuning, and the kernels tuning records name before applying them
(:mod:`pose_tuner.compile.backends.cpu`), never any for a target that names none. It
tunes with the design space of the target's kernel (:func:`design_space`): TVM's x86
schedule rules with the kernel's intrinsic in the multi-level tiling, and the CPU
tensorization post-processors. TVM 0.27 picks its own rules only for AVX-512 (and maps
AVX-VNNI to the 512-bit VNNI intrinsic, which an AVX-VNNI CPU cannot run); naming the
space here makes every member of the family explicit.
"""

from __future__ import annotations

import re

from pose_tuner.compile.kernels.avx2 import AVX2Kernel
from pose_tuner.compile.kernels.avx512 import AVX512Kernel
from pose_tuner.compile.kernels.avxvnni import AVXVNNIKernel
from pose_tuner.compile.kernels.base import Int8Kernel
from pose_tuner.compile.kernels.vnni import VNNIKernel

KERNELS: dict[str, Int8Kernel] = {k.name: k for k in (
    VNNIKernel(), AVX512Kernel(), AVXVNNIKernel(), AVX2Kernel())}


def get_kernel(name: str) -> Int8Kernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown int8 kernel {name!r}; known: {', '.join(KERNELS)}") from None


def design_space(name: str):
    """MetaSchedule's design space for an LLVM x86 target whose int8 kernel is ``name``:
    TVM's ``ScheduleRule::DefaultX86`` with that kernel's intrinsic, and its
    ``Postproc::DefaultCPUTensorization``."""
    from tvm.s_tir import meta_schedule as ms

    kernel = get_kernel(name)
    kernel.register()
    reuse = ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global")
    rules = [
        ms.schedule_rule.ApplyCustomRule(),
        ms.schedule_rule.InlineConstantScalars(),
        ms.schedule_rule.AutoInline(
            into_producer=False, into_consumer=True, inline_const_tensor=True,
            disallow_if_then_else=True, require_injective=True, require_ordered=True,
            disallow_op=["tirx.exp"]),
        ms.schedule_rule.AddRFactor(max_jobs_per_core=16, max_innermost_factor=64),
        ms.schedule_rule.MultiLevelTilingWithIntrin(
            kernel.intrin, structure="SSRSRS", tile_binds=None, max_innermost_factor=64,
            vector_load_lens=None, reuse_read=None, reuse_write=reuse),
        ms.schedule_rule.MultiLevelTiling(
            structure="SSRSRS", tile_binds=None, max_innermost_factor=64,
            vector_load_lens=None, reuse_read=None, reuse_write=reuse),
        ms.schedule_rule.ParallelizeVectorizeUnroll(
            max_jobs_per_core=16, max_vectorize_extent=64, unroll_max_steps=[0, 16, 64, 512],
            unroll_explicit=True),
        ms.schedule_rule.RandomComputeLocation(),
    ]
    postprocs = [
        ms.postproc.DisallowDynamicLoop(),
        ms.postproc.RewriteParallelVectorizeUnroll(),
        ms.postproc.RewriteReductionBlock(),
        ms.postproc.RewriteTensorize(vectorize_init_loop=True),
        ms.postproc.RewriteLayout(),
    ]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=postprocs,
                                             mutator_probs="llvm")


def count_instructions(executable, mnemonic: str) -> dict[str, int]:
    """Per function, the ``mnemonic`` instructions in a built module's assembly.

    ``executable`` is what :func:`pose_tuner.compile.pipeline.compile_module` returns (or any
    runtime module with an LLVM module imported). Empty when none is there.
    """
    mod = getattr(executable, "mod", executable)
    mods = [mod] + list(getattr(mod, "imports", []))
    pattern = re.compile(rf"\b{re.escape(mnemonic)}\b")
    counts: dict[str, int] = {}
    for m in mods:
        try:
            asm = m.inspect_source("asm")
        except Exception:  # noqa: BLE001 - not an LLVM module
            continue
        current = None
        for line in asm.splitlines():
            label = re.match(r"^([A-Za-z_][\w.$]*):", line)
            if label:
                current = label.group(1)
            elif pattern.search(line):
                counts[current] = counts.get(current, 0) + 1
    return counts


__all__ = ["KERNELS", "Int8Kernel", "count_instructions", "design_space", "get_kernel"]

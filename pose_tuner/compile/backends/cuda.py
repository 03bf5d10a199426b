"""NVIDIA GPUs (TVM kind ``cuda``): CUDA code generation, GPU design space, dlight defaults.

Kernels are compiled into the library while it is built, by the CUDA toolchain
(:mod:`pose_tuner.compile.toolchains.cuda`), inside the target's scope, which is where
TVM's kernel compiler reads the arch to compile for. Functions no tuning record covers get
dlight's default GPU schedules. There are no int8 kernels of ours for CUDA: TVM's CUDA
rules schedule the integer convs as they are.
"""

from __future__ import annotations

from pose_tuner.compile.backends.base import Backend


class CUDABackend(Backend):
    kind = "cuda"

    def tensor_intrin_modules(self, target) -> tuple[str, ...]:
        return ("cuda",)

    def enable_codegen(self) -> None:
        from pose_tuner.compile.toolchains.cuda import enable_codegen

        enable_codegen()

    def space_generator(self, target, int8_kernel: str | None = None):
        """The plain CUDA rules of MetaSchedule.

        For sm_75 and newer MetaSchedule picks its tensor-core rules, whose sketches of the
        zoo's fp16 convolutions all fail to build in TVM 0.27 ("Cannot find shape of the
        wmma fragment ..._reindex_pad_shared.dyn_wmma.accumulator": 13 of the 35 fp16 tasks
        of the default model at 64x64 had no buildable sketch). The plain CUDA rules build
        every fp32, fp16 and int8 task.
        """
        from tvm.s_tir import meta_schedule as ms

        self._no_int8_kernel(int8_kernel)
        return ms.space_generator.PostOrderApply(sch_rules="cuda", postprocs="cuda",
                                                 mutator_probs="cuda")

    def prepare_for_device(self, mod, target):
        return gpu_default_schedules(mod, target)

    def build(self, mod, target):
        import tvm

        with target:
            return tvm.compile(mod, target=target)

    def artifact_info(self, path: str) -> dict:
        """How the kernels were compiled (nvcc or nvrtc) and the GPU code images the
        library holds (``sm_90`` cubins, PTX)."""
        from pose_tuner.compile.toolchains.cuda import compile_mode, fatbin_images

        with open(path, "rb") as f:
            return {"cuda_compiler": compile_mode(), "cuda_images": fatbin_images(f.read())}


def gpu_default_schedules(mod, target):
    """dlight schedules for the GPU kernels no tuning record covers.

    TVM 0.27's default CUDA pipeline also tries dlight's Reduction / GeneralReduction
    rules, whose schedule for the grouped convolutions of the sub-pixel rewrite fails
    later in LowerCrossThreadReduction ("reduction-related loops ... not the deepest");
    Matmul, GEMV and the Fallback rule build every kernel of the zoo models. Scheduled
    functions are marked, so the default pipeline leaves them alone.
    """
    from tvm.s_tir import dlight as dl

    with target:
        return dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Fallback())(mod)

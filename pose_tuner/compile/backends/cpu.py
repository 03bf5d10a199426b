"""CPU targets (TVM kind ``llvm``: x86-64 and aarch64, this machine or over RPC).

CPU builds need schedules from MetaSchedule (TVM 0.27 has no usable untuned CPU path for
convolutions), so the backend's work is in the design space: TVM's default rules, or,
for a target that names an int8 kernel, TVM's x86 rules with that kernel's intrinsic
(:func:`pose_tuner.compile.kernels.design_space`). Only the kernels named are registered:
a target without one (aarch64) gets nothing x86-specific. The custom rule of the packed
int8 depthwise block (:mod:`pose_tuner.compile.int8.rules`) is registered for every CPU
target; it is plain TIR scheduling.
"""

from __future__ import annotations

from pose_tuner.compile.backends.base import Backend


class CPUBackend(Backend):
    kind = "llvm"
    host_kernels = True

    def tensor_intrin_modules(self, target) -> tuple[str, ...]:
        """TVM's ARM intrinsics for an ARM ``mtriple`` (its default aarch64 rules name
        them), else its x86 ones (its x86 rules do)."""
        mtriple = str(target.attrs.get("mtriple", ""))
        return ("arm_cpu",) if mtriple.startswith(("aarch64", "arm")) else ("x86",)

    def register_intrinsics(self, int8_kernels=()) -> None:
        from pose_tuner.compile.int8.rules import register_schedule_rules

        register_schedule_rules()
        if int8_kernels:
            from pose_tuner.compile.kernels import get_kernel

            for name in int8_kernels:
                get_kernel(name).register()

    def space_generator(self, target, int8_kernel: str | None = None):
        if int8_kernel is not None:
            from pose_tuner.compile.kernels import design_space

            return design_space(int8_kernel)
        return "post-order-apply"

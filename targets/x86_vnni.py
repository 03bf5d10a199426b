"""x86-64 host CPU with AVX-512 VNNI (int8 dot products), measured on this machine."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Target, TargetUnavailable

#: A CPU name that LLVM knows and that has AVX-512 VNNI: used when the host is not one.
FALLBACK_MCPU = "cascadelake"


def cpu_flags() -> set[str]:
    """The flags of the first CPU in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_has_vnni() -> bool:
    flags = cpu_flags()
    return "avx512_vnni" in flags or "avx512vnni" in flags


def host_mcpu() -> str:
    """LLVM's name for this CPU if it has VNNI (e.g. ``znver4``), else ``cascadelake``.

    Reads LLVM's host detection only when TVM is already imported, so listing targets
    stays instant; otherwise maps a few well-known cases from /proc/cpuinfo.
    """
    import sys

    if not host_has_vnni():
        return FALLBACK_MCPU
    if "tvm" in sys.modules:
        from tvm.target import codegen

        name = str(codegen.llvm_get_system_cpu())
        if name and name != "generic":
            return name
    flags = cpu_flags()
    # Zen 4 / Zen 5 expose avx512_bf16 + avx512_vnni + an AMD-only flag.
    if "avx512_bf16" in flags and ("sse4a" in flags or "svm" in flags):
        return "znver4"
    return FALLBACK_MCPU


@dataclass(frozen=True)
class X86VNNI(Target):
    name: str = "x86-vnni"
    description: str = "this machine's x86-64 CPU with AVX-512 VNNI (llvm, measured locally)"
    baselines: tuple[str, ...] = ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16",
                                 "openvino-int8")

    def tvm_target(self) -> dict:
        return {"kind": "llvm", "mcpu": host_mcpu(), "num-cores": self.num_threads()}

    def check_available(self) -> None:
        if not host_has_vnni():
            raise TargetUnavailable(
                "target x86-vnni needs a CPU with AVX-512 VNNI, and this one lacks it "
                "(no avx512_vnni in /proc/cpuinfo); run on a VNNI machine (Cascade Lake, "
                "Ice Lake, Zen 4 or newer)"
            )

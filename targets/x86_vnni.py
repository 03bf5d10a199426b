"""x86-64 host CPU with AVX-512 VNNI (int8 dot products), measured on this machine."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Target, TargetUnavailable

#: The CPU name LLVM compiles for: AVX-512 VNNI, and correct code for int8 epilogues.
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
    """The LLVM CPU the x86-vnni target compiles for: ``cascadelake`` (AVX-512 + VNNI).

    Not the host's own name: with TVM 0.27's LLVM 22, ``znver4`` / ``znver5`` code for some
    tuned int8 requantize loops is wrong (every other output position of an int32->float32
    conversion), about one tuned build in three; the same schedules built for
    ``cascadelake`` are exact. Zen 4/5, Ice Lake and Sapphire Rapids run Cascade Lake code
    (AVX-512F/BW/DQ/VL + VNNI), so one target serves every VNNI machine and shares one
    tuning database.
    """
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

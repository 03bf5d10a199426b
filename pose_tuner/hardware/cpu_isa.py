"""Which x86-64 instruction sets this host offers: a hardware description, no TVM here.

The host's features come from archspec (Spack's CPU detection: it reads /proc/cpuinfo on
Linux, sysctl on macOS, and names the microarchitecture, e.g. ``zen3`` or
``cascadelake``); the levels are read from the host's own flags, not from the named
microarchitecture's list. Four ISA levels matter to pose-tuner; each is a set of features:

========== ======================================== =====================================
level      features                                 int8 dot product
========== ======================================== =====================================
``avx2``   AVX2 + FMA (Haswell, Zen 1 and newer)    ``vpmaddubsw`` + ``vpmaddwd`` (256)
``avxvnni`` AVX2 + FMA + AVX-VNNI (Alder Lake)      ``{vex} vpdpbusd`` (256)
``avx512`` AVX-512 F/BW/DQ/VL (Skylake-SP)          ``vpmaddubsw`` + ``vpmaddwd`` (512)
``vnni``   AVX-512 + AVX512-VNNI (Cascade Lake,     ``vpdpbusd`` (512)
           Ice Lake, Zen 4 and newer)
========== ======================================== =====================================

``PTUNER_HOST_ISA=LEVEL`` makes the host look smaller: only the levels that LEVEL
implies count as present (``avx2`` on a VNNI machine searches and tests as an AVX2
machine would). It cannot make a host look bigger than it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

#: environment variable that restricts the host's ISA levels
HOST_ISA_ENV = "PTUNER_HOST_ISA"

_AVX2 = frozenset({"avx2", "fma"})
_AVX512 = _AVX2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}

#: ISA level -> the CPU features (archspec / /proc/cpuinfo names) it needs
LEVELS: dict[str, frozenset[str]] = {
    "avx2": _AVX2,
    "avxvnni": _AVX2 | {"avx_vnni"},
    "avx512": _AVX512,
    "vnni": _AVX512 | {"avx512_vnni"},
}

#: level -> how messages name it
LEVEL_NAMES: dict[str, str] = {
    "avx2": "AVX2 and FMA",
    "avxvnni": "AVX-VNNI",
    "avx512": "AVX-512 (F/BW/DQ/VL)",
    "vnni": "AVX-512 VNNI",
}

#: the best level first: what ``--target x86`` resolves to on a host that has several
PREFERENCE = ("vnni", "avx512", "avxvnni", "avx2")


class HostISAError(ValueError):
    """``PTUNER_HOST_ISA`` holds a value that is not a level, or one this host lacks."""


@dataclass(frozen=True)
class HostISA:
    """What this host offers: its microarchitecture, its levels and why."""

    microarchitecture: str
    #: levels present, best first (restricted by PTUNER_HOST_ISA when set)
    levels: tuple[str, ...]
    #: the value of PTUNER_HOST_ISA, if set
    restricted_to: str | None = None

    @property
    def best(self) -> str | None:
        return self.levels[0] if self.levels else None

    def has(self, level: str) -> bool:
        return level in self.levels

    def explain(self) -> str:
        """One line: the microarchitecture, the levels present, the restriction if any."""
        have = ", ".join(self.levels) if self.levels else "none of " + ", ".join(PREFERENCE)
        text = f"{self.microarchitecture}: {have}"
        if self.restricted_to:
            text += f" (restricted by {HOST_ISA_ENV}={self.restricted_to})"
        return text


@lru_cache(maxsize=1)
def _detected() -> tuple[str, frozenset[str]]:
    """(microarchitecture name, features) of this host, as archspec sees it.

    The features are the host's own flags (archspec's ``detected_info``), not those of the
    named microarchitecture: a virtual machine often hides a niche flag (a Zen 4/5 VM without
    ``rdseed``), and archspec then names the generic ``x86_64_v4``, whose feature list
    lacks AVX-512 VNNI although the host runs it.
    """
    import archspec.cpu
    from archspec.cpu.detect import detected_info

    return archspec.cpu.host().name, frozenset(detected_info().features)


def host_features() -> frozenset[str]:
    """The CPU features of this host (unrestricted)."""
    return _detected()[1]


def levels_of(features: frozenset[str] | set[str]) -> tuple[str, ...]:
    """The levels whose features are all in ``features``, best first."""
    return tuple(lv for lv in PREFERENCE if LEVELS[lv] <= set(features))


def host_isa() -> HostISA:
    """This host's ISA levels, restricted by ``PTUNER_HOST_ISA`` when it is set.

    Raises :class:`HostISAError` for an unknown value, or a level this host does not have.
    """
    name, features = _detected()
    present = levels_of(features)
    wanted = os.environ.get(HOST_ISA_ENV, "").strip()
    if not wanted:
        return HostISA(name, present)
    if wanted not in LEVELS:
        raise HostISAError(
            f"{HOST_ISA_ENV}={wanted!r} is not an ISA level; allowed values: "
            f"{', '.join(sorted(LEVELS))}"
        )
    if wanted not in present:
        raise HostISAError(
            f"{HOST_ISA_ENV}={wanted} asks for more than this CPU has ({name}: "
            f"{', '.join(present) or 'no AVX2'}); it can only make the host look smaller"
        )
    implied = levels_of(LEVELS[wanted])
    return HostISA(name, tuple(lv for lv in present if lv in implied), wanted)

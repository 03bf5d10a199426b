"""TVM's tensor intrinsics, imported only for the architecture a target has.

``tvm.s_tir.tensor_intrin``'s package ``__init__`` imports every module it has (CUDA,
ARM, x86, ROCm, Hexagon, RISC-V): about 20 s of CPU, 11 s of them CUDA's hundreds of
TVMScript functions. MetaSchedule's ``TuneContext`` imports the package, so every process
that tunes (each candidate's job) and every build that registers an int8 kernel paid it,
for intrinsics of devices it never targets. :func:`import_only` puts the package in place
without running its ``__init__`` and imports the modules named; a later
``import tvm.s_tir.tensor_intrin`` (MetaSchedule's) finds it there, and the modules not
named stay importable as submodules (``from tvm.s_tir.tensor_intrin import cuda``).
Compile backends name their modules
(:meth:`pose_tuner.compile.backends.base.Backend.tensor_intrin_modules`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

PACKAGE = "tvm.s_tir.tensor_intrin"


def import_only(modules) -> None:
    """Import ``modules`` (names in ``tvm.s_tir.tensor_intrin``: ``x86``, ``arm_cpu``,
    ``cuda``, ...) and register their intrinsics, without the package's others. Idempotent;
    a no-op for modules already imported (also when the whole package was)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(PACKAGE)
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        parent, _, name = PACKAGE.rpartition(".")
        setattr(importlib.import_module(parent), name, package)
    for module in modules:
        importlib.import_module(f"{PACKAGE}.{module}")

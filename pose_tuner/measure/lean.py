"""Child processes that build, check, time or score an artifact import no PyTorch.

TVM's FFI imports PyTorch whenever it is installed (for DLPack interop with torch
tensors), and Relax does too. On a slow CPU that is most of what a fresh process spends
importing TVM: on a 2-core AMD EPYC (Zen) VM, ``import tvm`` took 6.4 s with torch
2.13 installed (``python -X importtime -c "import tvm"``; torch alone 2.2 s of it) and
2.8 s with it blocked.
The processes pose-tuner starts to build, check, time and score an artifact never touch
a torch tensor, and a search starts two or three of them per candidate, so they block
the import (:func:`without_torch`); TVM treats that as torch not being installed.
"""

from __future__ import annotations

import sys


class _NoTorch:
    """A meta path finder refusing ``torch`` and its submodules. Unlike a None entry in
    ``sys.modules`` it leaves no ``torch`` key there, which libraries probing for torch
    tensors (SciPy's array API helpers) would take for an imported torch."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"{name} is not imported in this process (pose_tuner.measure.lean)",
                              name=name)
        return None


def without_torch() -> None:
    """From now on ``import torch`` raises ImportError in this process, unless torch is
    imported already. Call it first in the ``__main__`` of a child process that needs no
    PyTorch, never in a process that may need it later."""
    if "torch" not in sys.modules and not any(isinstance(f, _NoTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTorch())

"""Child processes that only run TVM keep PyTorch out (measure/lean.py)."""

import subprocess
import sys

import pytest


def _run(tmp_path, code: str) -> str:
    script = tmp_path / "child.py"  # a file: TVMScript reads its source
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_tvm_relax_and_meta_schedule_import_and_build_without_torch(tmp_path):
    pytest.importorskip("torch")
    out = _run(tmp_path,
        "import sys\n"
        "from pose_tuner.measure.lean import without_torch\n"
        "without_torch(); without_torch()\n"
        "import numpy as np, tvm\n"
        "from tvm import relax\n"
        "from tvm.script import relax as R\n"
        "import tvm.s_tir.meta_schedule\n"
        "from scipy._lib._array_api import array_namespace\n"
        "array_namespace(np.zeros(2))  # probes sys.modules for torch tensors\n"
        "@tvm.script.ir_module\n"
        "class M:\n"
        "    @R.function\n"
        "    def main(x: R.Tensor((4,), 'float32')):\n"
        "        return R.add(x, x)\n"
        "vm = relax.VirtualMachine(relax.build(M, 'llvm'), tvm.cpu())\n"
        "y = vm['main'](tvm.runtime.tensor(np.arange(4, dtype='float32'))).numpy()\n"
        "print(y.tolist(), 'torch' in sys.modules)\n"
        "try:\n"
        "    import torch.nn\n"
        "except ImportError as e:\n"
        "    print('refused:', e)\n")
    lines = out.splitlines()
    assert lines[-2] == "[0.0, 2.0, 4.0, 6.0] False"
    assert lines[-1].startswith("refused: torch is not imported in this process")
    assert sum(1 for line in lines if line.startswith("refused")) == 1


def test_an_imported_torch_stays_usable(tmp_path):
    pytest.importorskip("torch")
    out = _run(tmp_path,"import torch\n"
               "from pose_tuner.measure.lean import without_torch\n"
               "without_torch()\n"
               "import torch.nn\n"
               "print(torch.nn.Linear(2, 3).weight.shape[0])\n")
    assert out.splitlines()[-1] == "3"

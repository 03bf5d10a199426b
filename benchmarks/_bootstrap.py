"""Imported first by every benchmark script (run as ``python benchmarks/NAME.py``): puts
the repository on ``sys.path`` and gives TVM's runtime the same threads as every other
backend. TVM uses one thread per physical core unless told: on a 2-vCPU machine that is
one thread, half of what ONNX Runtime, OpenVINO and ``tuner search`` get."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

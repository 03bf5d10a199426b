"""Measurement: an artifact (or any callable) to numbers, the same way for every backend.

* :mod:`~pose_tuner.measure.runner` – the timing loop (warm-up, repeats sized to a time
  budget, one host or device clock) and the local / remote TVM runners;
* :mod:`~pose_tuner.measure.timing_lock` – one measurement at a time on a machine;
* :mod:`~pose_tuner.measure.check` – the numerical check against the reference;
* :mod:`~pose_tuner.measure.reference` – the one ONNX Runtime reference session;
* :mod:`~pose_tuner.measure.inputs` – the structured inputs every backend is checked with;
* :mod:`~pose_tuner.measure.rpc` – sessions on a pool's devices over TVM RPC;
* :mod:`~pose_tuner.measure.cuda_runtime` – loading TVM's CUDA runtime to run on a GPU.
"""

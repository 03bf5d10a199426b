"""The compile layer: an ONNX model to a TVM artifact for one target.

* :mod:`~pose_tuner.compile.frontend` – ONNX to Relax (and fp16);
  :mod:`~pose_tuner.compile.onnx_rewrite` – ONNX graph fixes before import;
* :mod:`~pose_tuner.compile.int8` – the int8 path: ONNX Runtime QDQ quantization, then a
  Relax rewrite to integer compute; :mod:`~pose_tuner.compile.kernels` – the x86 int8
  dot-product kernels it is tensorized with;
* :mod:`~pose_tuner.compile.relax_passes` – Relax rewrites (sub-pixel deconvolution);
* :mod:`~pose_tuner.compile.pipeline` – prepare (legalize, fuse) and build;
  :mod:`~pose_tuner.compile.tuning` – MetaSchedule tuning into a database per target;
* :mod:`~pose_tuner.compile.backends` – what differs per TVM target kind (llvm, cuda);
  :mod:`~pose_tuner.compile.toolchains` – compilers outside TVM (CUDA).

Imports :mod:`pose_tuner.hardware` (descriptions) and :mod:`pose_tuner.measure` (the
tuning runners), nothing above them.
"""

"""Models: what a user points the tuner at, made ready for the compile pipeline.

* :mod:`~pose_tuner.models.source` – a zoo name, an ONNX file or a ``module:factory`` to a
  prepared, cleaned ONNX model; :mod:`~pose_tuner.models.onnx_clean` – its hygiene;
* :mod:`~pose_tuner.models.export` – PyTorch to ONNX, FLOPs and parameters;
* :mod:`~pose_tuner.models.pruning` – structured channel pruning (torch-pruning);
* :mod:`~pose_tuner.models.hashing` – the identities rows and files are keyed by;
* :mod:`~pose_tuner.models.zoo` – the built-in models and their trained weights.
"""

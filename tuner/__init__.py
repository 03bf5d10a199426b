"""pose-tuner: auto-tuning of pose models with TVM."""

__version__ = "0.1.0"

"""Model identity: the hash of a model file's bytes (a leaf module; imports nothing of ours).

A model is known by the first 16 hex characters of the sha256 of its ONNX file's bytes:
:func:`file_hash` of a path, :func:`sha16` of bytes already read (the same value).
"""

from __future__ import annotations

import hashlib
import os
from typing import Union

__all__ = ["sha16", "file_hash", "model_hash"]

PathLike = Union[str, os.PathLike]


def sha16(data: bytes) -> str:
    """The first 16 hex characters of the sha256 of ``data`` (the tuner's model hashes)."""
    return hashlib.sha256(data).hexdigest()[:16]


def file_hash(path: PathLike) -> str:
    """The model identity: first 16 hex chars of the sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def model_hash(path: PathLike) -> str:
    """First 16 hex chars of the sha256 of the file's bytes (:func:`file_hash`)."""
    return file_hash(str(path))

"""The zoo's trained weights: the checkpoint format, where checkpoints live, and loading.

A checkpoint (``pose_tuner/models/zoo/weights/<model>.pt`` by default) is a ``torch.save``
dict: ``format`` (:data:`CHECKPOINT_FORMAT`), the model name and the factory arguments
that rebuild its architecture (``width_mult``, ``model_kwargs``, ``num_keypoints``), the
``input_size`` it was trained at, free metadata (the trainer adds its steps, losses, val
AP and config), and an fp16 ``state_dict``.  :func:`save_checkpoint` writes one (the
trainer, :mod:`pose_tuner.training.train`, calls it); :func:`load_trained` turns one back
into an fp32 eval-mode module (:func:`pose_tuner.models.zoo.build_model` calls it).

>>> from pose_tuner.models.zoo.weights import load_trained
>>> model = load_trained("shufflenetv2_fpn", (256, 192))                # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from pose_tuner.models.zoo.registry import get_spec

__all__ = [
    "WEIGHTS_DIR",
    "CHECKPOINT_FORMAT",
    "default_checkpoint_path",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "load_trained",
]

PathLike = Union[str, os.PathLike]

#: where the zoo looks for trained weights (``<name>.pt``)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CHECKPOINT_FORMAT = "pose-tuner-checkpoint/1"


def default_checkpoint_path(model: str) -> Path:
    return WEIGHTS_DIR / f"{model}.pt"


def _build_untrained(name: str, width_mult: Optional[float], model_kwargs: dict,
                     num_keypoints: Optional[int] = None) -> nn.Module:
    spec = get_spec(name)
    kw = dict(model_kwargs)
    kw.setdefault("num_keypoints", num_keypoints or spec.num_keypoints)
    with torch.random.fork_rng(devices=[]):
        return spec.factory(width_mult=width_mult, **kw)


def _half_state_dict(model: nn.Module) -> dict:
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            h = v.to(torch.float16)
            # keep fp32 where fp16 would overflow (never seen, but cheap to guard)
            v = h if torch.isfinite(h).all() or not torch.isfinite(v).all() else v.clone()
        out[k] = v.clone()
    return out


def save_checkpoint(model: nn.Module, path: PathLike, *, model_name: str,
                    input_size: Sequence[int], width_mult: Optional[float] = None,
                    model_kwargs: Optional[dict] = None, **meta: Any) -> Path:
    """``torch.save`` an fp16 state_dict plus metadata (atomic: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model_name,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "width_mult": width_mult,
        "model_kwargs": dict(model_kwargs or {}),
        "num_keypoints": int(getattr(model, "num_keypoints", 17)),
        "torch_version": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "state_dict": _half_state_dict(model),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: PathLike) -> dict:
    """The checkpoint dict (``weights_only`` load); raises ``ValueError`` if not ours."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pose-tuner checkpoint (format "
                         f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    return ckpt


def model_from_checkpoint(ckpt: Union[dict, PathLike]) -> nn.Module:
    """An fp32, eval-mode zoo model with the checkpoint's weights."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = _build_untrained(ckpt["model"], ckpt.get("width_mult"), ckpt.get("model_kwargs") or {},
                             ckpt.get("num_keypoints"))
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(sd, strict=True)
    model.float().eval()
    model.trained_meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model


def load_trained(name: str, input_size: Optional[Sequence[int]] = None, *,
                 width_mult: Optional[float] = None, weights_dir: Optional[PathLike] = None,
                 strict_input_size: bool = False, **model_kwargs: Any) -> Optional[nn.Module]:
    """The trained zoo model ``name`` from ``<weights_dir>/<name>.pt``, or ``None``.

    ``None`` when there is no checkpoint, or when it was trained for another
    architecture (``width_mult`` / factory kwargs that differ from the
    requested ones; ``None`` requested = the factory default).  The networks
    are fully convolutional, so a checkpoint trained at another
    ``input_size`` still loads (accuracy then suffers from the changed
    person scale); ``strict_input_size=True`` returns ``None`` instead.
    The module is fp32, in eval mode, with the checkpoint metadata in
    ``model.trained_meta``.
    """
    path = Path(weights_dir) / f"{name}.pt" if weights_dir is not None else \
        default_checkpoint_path(name)
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    if ckpt.get("model") != name:
        warnings.warn(f"{path} holds model {ckpt.get('model')!r}, not {name!r}; ignored",
                      RuntimeWarning, stacklevel=2)
        return None
    norm = lambda w: 1.0 if w is None else float(w)  # noqa: E731  (factories default to 1.0)
    if norm(ckpt.get("width_mult")) != norm(width_mult):
        return None
    saved_kw = dict(ckpt.get("model_kwargs") or {})
    if model_kwargs:
        default_k = get_spec(name).num_keypoints
        want = {k: v for k, v in model_kwargs.items()
                if not (k == "num_keypoints" and v == default_k)}
        if want != {k: v for k, v in saved_kw.items() if k != "num_keypoints"}:
            return None
    elif saved_kw:
        return None
    if input_size is not None and strict_input_size and \
            [int(v) for v in input_size] != list(ckpt.get("input_size") or []):
        return None
    return model_from_checkpoint(ckpt)

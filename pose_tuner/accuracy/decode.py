"""Decoding model outputs into keypoints (in model-input pixel coordinates).

* :class:`HeatmapDecoder`: one output (1, K, h, w); argmax plus the
  standard quarter-pixel shift toward the higher neighbour (HRNet /
  mmpose ``MSRAHeatmap``); score = the heatmap maximum; heatmap pixel
  ``(i, j)`` maps to input pixel ``(i * W/w, j * H/h)``.
* :class:`SimCCDecoder`: two outputs (1, K, Wx) and (1, K, Hy), with
  ``Wx = W * r`` and ``Hy = H * r`` (``r`` the split ratio); position =
  argmax / r, score = min of the two maxima (mmpose ``SimCCLabel``).
* :func:`get_decoder` picks one from the output shapes.

Outputs may be numpy arrays, torch tensors, TVM tensors (anything with
``.numpy()``) or tuples/lists of those (see :func:`to_numpy`).
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

__all__ = [
    "Decoder",
    "HeatmapDecoder",
    "SimCCDecoder",
    "get_decoder",
    "to_numpy",
    "output_shapes",
    "render_gaussian_heatmaps",
]

Output = Union[np.ndarray, Sequence[np.ndarray]]


def to_numpy(out: Any) -> Union[np.ndarray, list]:
    """A model output as numpy: arrays stay, torch/TVM tensors go through
    ``.numpy()``, tuples/lists (and TVM Arrays) become lists of arrays;
    a one-element list is unwrapped."""
    if isinstance(out, np.ndarray):
        return out
    if hasattr(out, "detach"):          # torch.Tensor
        return out.detach().cpu().numpy()
    if hasattr(out, "numpy"):           # tvm.runtime.Tensor / NDArray and friends
        return np.asarray(out.numpy())
    if isinstance(out, (list, tuple)) or (hasattr(out, "__len__") and hasattr(out, "__getitem__")
                                          and not isinstance(out, (str, bytes, dict))):
        items = [to_numpy(out[i]) for i in range(len(out))]
        return items[0] if len(items) == 1 else items
    return np.asarray(out)


def output_shapes(out: Any) -> list[tuple[int, ...]]:
    out = to_numpy(out)
    if isinstance(out, list):
        return [tuple(np.shape(o)) for o in out]
    return [tuple(out.shape)]


def _check_finite(name: str, *arrays: np.ndarray) -> None:
    for a in arrays:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{name}: model output has non-numeric dtype {a.dtype}")
        if not np.isfinite(a).all():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(np.isinf(a).sum())
            raise ValueError(f"{name}: model output contains {n_nan} NaN and {n_inf} Inf values "
                             f"(of {a.size}); the model/backend is broken")


def _check_k(name: str, k: int, expected: int) -> None:
    if k != expected:
        raise ValueError(f"{name}: model outputs {k} keypoints, expected {expected} "
                         f"({'COCO person keypoints' if expected == 17 else 'the dataset'})")


class Decoder:
    """Base class: ``decode(output) -> (keypoints (K, 2) input pixels, scores (K,))``."""

    name = "base"

    def __init__(self, input_size: Sequence[int], num_keypoints: int = 17):
        if len(input_size) != 2 or int(input_size[0]) <= 0 or int(input_size[1]) <= 0:
            raise ValueError(f"input_size must be (H, W) > 0, got {input_size!r}")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_keypoints = int(num_keypoints)

    def decode(self, output: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def check(self, output: Any) -> Any:
        """The output as validated numpy (an array, or a list of arrays); raises
        ``ValueError`` for a wrong shape, keypoint count, NaN or Inf."""
        out = self._check(output)
        return list(out) if isinstance(out, tuple) else out

    def _check(self, output: Any) -> Any:
        raise NotImplementedError

    def flip_back(self, output: Any, flip_pairs: Sequence[Sequence[int]]) -> Any:
        """The output of a horizontally flipped input, mapped back to the unflipped frame
        (channels of left/right pairs swapped), ready to be averaged with the plain one."""
        raise NotImplementedError

    @staticmethod
    def _perm(k: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
        perm = np.arange(k)
        for a, b in flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def __repr__(self) -> str:
        return f"{type(self).__name__}(input_size={self.input_size}, K={self.num_keypoints})"


class HeatmapDecoder(Decoder):
    """Heatmaps (1, K, h, w) -> keypoints; see the module docstring."""

    name = "heatmap"

    def __init__(self, input_size: Sequence[int], heatmap_size: Sequence[int] = None,
                 num_keypoints: int = 17):
        super().__init__(input_size, num_keypoints)
        self.heatmap_size = None if heatmap_size is None else (int(heatmap_size[0]), int(heatmap_size[1]))

    def _check(self, output: Any) -> np.ndarray:
        hm = to_numpy(output)
        if isinstance(hm, list):
            raise ValueError(f"HeatmapDecoder: expected one heatmap array, got {len(hm)} outputs "
                             f"with shapes {[np.shape(o) for o in hm]}")
        if hm.ndim != 4 or hm.shape[0] != 1:
            raise ValueError(f"HeatmapDecoder: expected heatmaps of shape (1, K, h, w), got {hm.shape}")
        _check_k("HeatmapDecoder", hm.shape[1], self.num_keypoints)
        if self.heatmap_size is not None and tuple(hm.shape[2:]) != self.heatmap_size:
            raise ValueError(f"HeatmapDecoder: heatmap size {tuple(hm.shape[2:])} differs from "
                             f"the expected {self.heatmap_size}")
        _check_finite("HeatmapDecoder", hm)
        return hm

    def decode(self, output: Any) -> tuple[np.ndarray, np.ndarray]:
        hm = self._check(output)[0].astype(np.float32, copy=False)   # (K, h, w)
        k, h, w = hm.shape
        flat = hm.reshape(k, -1)
        idx = flat.argmax(axis=1)
        scores = flat[np.arange(k), idx].astype(np.float64)
        ys, xs = np.divmod(idx, w)
        pts = np.stack([xs, ys], axis=1).astype(np.float64)
        # quarter offset toward the higher neighbour (mmpose refine_keypoints)
        kk = np.arange(k)
        inx = (xs > 0) & (xs < w - 1)
        dx = np.zeros(k)
        dx[inx] = hm[kk[inx], ys[inx], xs[inx] + 1] - hm[kk[inx], ys[inx], xs[inx] - 1]
        iny = (ys > 0) & (ys < h - 1)
        dy = np.zeros(k)
        dy[iny] = hm[kk[iny], ys[iny] + 1, xs[iny]] - hm[kk[iny], ys[iny] - 1, xs[iny]]
        pts[:, 0] += 0.25 * np.sign(dx)
        pts[:, 1] += 0.25 * np.sign(dy)
        stride = np.array([self.input_size[1] / w, self.input_size[0] / h])
        return pts * stride, scores

    def flip_back(self, output: Any, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
        """Flip back along W, swap pairs and shift one heatmap pixel to the right
        (HRNet ``shift_heatmap``: an array flip of the input is ``x -> W-1-x``,
        which puts the flipped-back peak ~0.75 heatmap pixel to the left)."""
        hm = self._check(output)
        hm = hm[:, self._perm(hm.shape[1], flip_pairs), :, ::-1].copy()
        hm[..., 1:] = hm[..., :-1].copy()
        return hm

    def encode(self, keypoints: np.ndarray, visible: np.ndarray = None, sigma: float = 2.0,
               heatmap_size: Sequence[int] = None) -> np.ndarray:
        """Gaussian target heatmaps (1, K, h, w) for keypoints in input pixels (the inverse
        of :meth:`decode`, up to the quarter-pixel refinement)."""
        size = heatmap_size or self.heatmap_size
        if size is None:
            raise ValueError("encode needs a heatmap_size")
        return render_gaussian_heatmaps(keypoints, self.input_size, size, visible, sigma)


def render_gaussian_heatmaps(keypoints: np.ndarray, input_size: Sequence[int],
                             heatmap_size: Sequence[int], visible: np.ndarray = None,
                             sigma: float = 2.0) -> np.ndarray:
    """(1, K, h, w) float32 Gaussians (peak 1) at ``keypoints`` (K, 2) given in input
    pixels, centred at sub-pixel positions ``keypoint * (w/W, h/H)``; channels with
    ``visible`` False are all zero."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    h, w = int(heatmap_size[0]), int(heatmap_size[1])
    sx, sy = w / float(input_size[1]), h / float(input_size[0])
    mu = kp * np.array([sx, sy])
    gx = np.exp(-((np.arange(w)[None, :] - mu[:, :1]) ** 2) / (2 * sigma ** 2))   # (K, w)
    gy = np.exp(-((np.arange(h)[None, :] - mu[:, 1:]) ** 2) / (2 * sigma ** 2))   # (K, h)
    hm = gy[:, :, None] * gx[:, None, :]
    if visible is not None:
        hm[~np.asarray(visible, dtype=bool)] = 0.0
    return hm[None].astype(np.float32)


class SimCCDecoder(Decoder):
    """SimCC (x, y) 1-D classification vectors -> keypoints; see the module docstring."""

    name = "simcc"

    def __init__(self, input_size: Sequence[int], split_ratio: float = 2.0,
                 num_keypoints: int = 17):
        super().__init__(input_size, num_keypoints)
        if not split_ratio > 0:
            raise ValueError(f"split_ratio must be > 0, got {split_ratio}")
        self.split_ratio = float(split_ratio)

    def _check(self, output: Any) -> tuple[np.ndarray, np.ndarray]:
        out = to_numpy(output)
        if not isinstance(out, list) and np.ndim(out) == 3:
            out = self.split(np.asarray(out))
        if not isinstance(out, list) or len(out) != 2:
            shapes = output_shapes(out)
            raise ValueError(f"SimCCDecoder: expected two outputs (1, K, Wx) and (1, K, Hy), "
                             f"or them concatenated (1, K, Wx + Hy), got shapes {shapes}")
        x, y = (np.asarray(o) for o in out)
        if x.ndim != 3 or y.ndim != 3 or x.shape[0] != 1 or y.shape[0] != 1:
            raise ValueError(f"SimCCDecoder: expected (1, K, Wx) and (1, K, Hy), got {x.shape} "
                             f"and {y.shape}")
        _check_k("SimCCDecoder", x.shape[1], self.num_keypoints)
        _check_k("SimCCDecoder", y.shape[1], self.num_keypoints)
        _check_finite("SimCCDecoder", x, y)
        return x, y

    def lengths(self) -> tuple[int, int]:
        """(Wx, Hy): the lengths of the x and y vectors at this split ratio."""
        H, W = self.input_size
        return int(round(W * self.split_ratio)), int(round(H * self.split_ratio))

    def split(self, xy: np.ndarray) -> list[np.ndarray]:
        """The (x, y) vectors of one concatenated output (1, K, Wx + Hy), the form
        :mod:`pose_tuner.models.onnx_clean` gives a SimCC model (one output for every backend)."""
        wx, hy = self.lengths()
        if xy.shape[-1] != wx + hy:
            raise ValueError(f"SimCCDecoder: a concatenated output has {wx} + {hy} = "
                             f"{wx + hy} bins at split ratio {self.split_ratio:g}, got "
                             f"shape {xy.shape}")
        return [xy[..., :wx], xy[..., wx:]]

    def decode(self, output: Any) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._check(output)
        x, y = x[0], y[0]
        ix, iy = x.argmax(axis=1), y.argmax(axis=1)
        k = np.arange(x.shape[0])
        scores = np.minimum(x[k, ix], y[k, iy]).astype(np.float64)
        pts = np.stack([ix, iy], axis=1).astype(np.float64) / self.split_ratio
        return pts, scores

    def flip_back(self, output: Any, flip_pairs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        x, y = self._check(output)
        perm = self._perm(x.shape[1], flip_pairs)
        out = [x[:, perm, ::-1].copy(), y[:, perm].copy()]
        if not isinstance(to_numpy(output), list):     # one concatenated output
            return np.concatenate(out, axis=-1)
        return out


def get_decoder(output_shapes: Any, input_size: Sequence[int],
                num_keypoints: int = 17) -> Decoder:
    """A decoder for a model whose outputs have these shapes.

    ``output_shapes`` is one shape (e.g. ``(1, 17, 64, 48)``) or a list of
    shapes.  One 4-D output with the same integer stride on both axes ->
    :class:`HeatmapDecoder`; two 3-D outputs (1, K, Wx), (1, K, Hy) with
    ``Wx / W == Hy / H``, or one (1, K, Wx + Hy) holding both, ->
    :class:`SimCCDecoder`.  Anything else, or
    K != ``num_keypoints``, raises ``ValueError``.
    """
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (H, W), got {input_size!r}")
    H, W = int(input_size[0]), int(input_size[1])
    shapes = output_shapes
    if isinstance(shapes, np.ndarray) or (len(shapes) > 0 and all(
            isinstance(s, (int, np.integer)) for s in shapes)):
        shapes = [tuple(int(s) for s in shapes)]
    shapes = [tuple(int(d) for d in s) for s in shapes]
    what = f"output shapes {shapes} for input (H, W) = {(H, W)}"
    supported = ("supported: one heatmap output (1, K, H/s, W/s), or two SimCC outputs "
                 "(1, K, W*r) and (1, K, H*r), or them concatenated (1, K, (W+H)*r)")
    if len(shapes) == 1 and len(shapes[0]) == 4:
        n, k, h, w = shapes[0]
        if n != 1:
            raise ValueError(f"cannot decode {what}: batch must be 1, got {n}")
        _check_k("get_decoder", k, num_keypoints)
        if h <= 0 or w <= 0 or H % h or W % w or H // h != W // w:
            raise ValueError(f"cannot decode {what}: the heatmap size is not the input size "
                             f"divided by one integer stride ({supported})")
        return HeatmapDecoder((H, W), (h, w), num_keypoints)
    if len(shapes) == 2 and all(len(s) == 3 for s in shapes):
        (nx, kx, wx), (ny, ky, hy) = shapes
        if nx != 1 or ny != 1:
            raise ValueError(f"cannot decode {what}: batch must be 1")
        _check_k("get_decoder", kx, num_keypoints)
        _check_k("get_decoder", ky, num_keypoints)
        rx, ry = wx / W, hy / H
        if not abs(rx - ry) < 1e-6 or rx <= 0:
            raise ValueError(f"cannot decode {what}: SimCC split ratios differ "
                             f"(x: {rx:g}, y: {ry:g})")
        return SimCCDecoder((H, W), rx, num_keypoints)
    if len(shapes) == 1 and len(shapes[0]) == 3:
        n, k, length = shapes[0]
        r = length / (W + H)
        if n != 1:
            raise ValueError(f"cannot decode {what}: batch must be 1, got {n}")
        _check_k("get_decoder", k, num_keypoints)
        dec = SimCCDecoder((H, W), r, num_keypoints) if r > 0 else None
        if dec is None or sum(dec.lengths()) != length or abs(dec.lengths()[0] - W * r) > 1e-6:
            raise ValueError(f"cannot decode {what}: one 3-D output must hold SimCC x and y "
                             f"vectors of one split ratio ({supported})")
        return dec
    raise ValueError(f"cannot decode {what} ({supported})")

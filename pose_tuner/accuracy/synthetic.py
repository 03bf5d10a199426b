"""Procedural COCO person-keypoint data: articulated figures on cluttered backgrounds.

``generate(out_dir, n_images, seed)`` writes ``out_dir/images/NNNNNN.jpg`` and
``out_dir/person_keypoints.json`` (COCO ``person_keypoints`` format, 17 COCO
keypoints and skeleton) and returns the JSON path.  Everything is drawn with
PIL + numpy from ``np.random.default_rng([seed, image_index])``, so the output
is a pure function of the arguments (and the PIL/libjpeg versions); image
``i`` does not depend on ``n_images``.

The figures
-----------
A 2-D skeleton with human proportions (units of the figure height): a torso
leaning up to ~30 degrees (sometimes bent further), a body yaw (frontal,
back, profile) that sets the projected shoulder/hip widths, which side is
near, and where the face points lie on the head; arms with shoulder
abduction -0.3..2.9 rad and elbow flexion 0..2.4 rad, legs with hip
abduction -0.3..0.6 rad (sometimes swung -1.5..1.5) and knee flexion
(mostly small, sometimes up to 2.2 rad); random foreshortening of limbs.
Limbs are thick round-capped lines, torso a quadrilateral, head a tilted
ellipse with hair, eyes, nose and ears drawn where the keypoints are; hands
and feet are small ellipses.  Clothing colours, stripes and bands vary.

Labels
------
Every drawn pixel is also written to a part-id mask (per person and body
part; occluders get their own id).  A keypoint inside the image is
``v=2`` if the mask at it shows a part of its own person that owns the
keypoint (e.g. the elbow belongs to the upper arm and forearm), else
``v=1`` (occluded but labelled).  Face points turned away from the camera
are ``v=1`` (just behind the silhouette) or ``v=0`` (the back of the head:
not labelled, as COCO annotators do); keypoints outside the image are
``v=0`` with ``x = y = 0``.  ``bbox`` is the tight box around the figure's
drawn geometry, clipped to the image; ``area`` is the figure's visible
pixel count (COCO: the visible segmentation area); ``segmentation`` is the
bbox rectangle as a polygon (placeholder, not used by keypoint eval).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from pose_tuner.accuracy.dataset import COCO_KEYPOINT_NAMES, COCO_SKELETON

__all__ = ["generate", "render_image", "KEYPOINT_OWNERS"]

PathLike = Union[str, os.PathLike]

# body parts (mask id = 1 + 16 * person + part)
TORSO, HEAD, NECK = 0, 1, 2
UPPER_ARM = {+1: 3, -1: 4}   # +1: the person's left side, -1: right
FOREARM = {+1: 5, -1: 6}
THIGH = {+1: 7, -1: 8}
SHIN = {+1: 9, -1: 10}
OCCLUDER = 255
MAX_PEOPLE = 15

#: parts whose pixels count as "the keypoint is visible"
KEYPOINT_OWNERS: tuple[tuple[int, ...], ...] = (
    (HEAD,), (HEAD,), (HEAD,), (HEAD,), (HEAD,),                         # face
    (TORSO, UPPER_ARM[1]), (TORSO, UPPER_ARM[-1]),                       # shoulders
    (UPPER_ARM[1], FOREARM[1]), (UPPER_ARM[-1], FOREARM[-1]),             # elbows
    (FOREARM[1],), (FOREARM[-1],),                                        # wrists
    (TORSO, THIGH[1]), (TORSO, THIGH[-1]),                                # hips
    (THIGH[1], SHIN[1]), (THIGH[-1], SHIN[-1]),                           # knees
    (SHIN[1],), (SHIN[-1],),                                              # ankles
)

_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 135], [198, 134, 96],
                  [160, 105, 70], [120, 75, 50], [90, 56, 38]], dtype=np.float64)
_HAIR = np.array([[20, 16, 14], [60, 40, 25], [110, 75, 40], [200, 170, 110],
                  [150, 60, 30], [180, 180, 180]], dtype=np.float64)


# --------------------------------------------------------------------------- helpers


def _col(rng: np.random.Generator, base: Optional[np.ndarray] = None, jitter: float = 0.0) -> tuple:
    c = rng.uniform(0, 255, 3) if base is None else base + rng.normal(0, jitter, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def _shade(c: tuple, f: float) -> tuple:
    return tuple(int(min(255, max(0, v * f))) for v in c)


def _turn(v: np.ndarray, a: float) -> np.ndarray:
    """Rotate ``v`` by ``a`` so that positive turns 'down' (0, 1) toward 'right' (1, 0)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1]])


class _Canvas:
    """Draws on the RGB image and the part-id mask at once, and tracks the extent."""

    def __init__(self, img, mask):
        from PIL import ImageDraw

        self.d = ImageDraw.Draw(img)
        self.m = ImageDraw.Draw(mask)
        self.lo = np.array([np.inf, np.inf])
        self.hi = np.array([-np.inf, -np.inf])

    def _ext(self, pts: np.ndarray, r: float = 0.0) -> None:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        self.lo = np.minimum(self.lo, pts.min(0) - r)
        self.hi = np.maximum(self.hi, pts.max(0) + r)

    def limb(self, p0, p1, width: float, col: tuple, pid: int) -> None:
        w = max(2, int(round(width)))
        r = w / 2.0
        seg = [tuple(p0), tuple(p1)]
        for drw, fill in ((self.d, col), (self.m, pid)):
            drw.line(seg, fill=fill, width=w)
            for p in (p0, p1):
                drw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill)
        self._ext([p0, p1], r)

    def poly(self, pts: np.ndarray, col: tuple, pid: Optional[int]) -> None:
        flat = [tuple(p) for p in np.asarray(pts)]
        self.d.polygon(flat, fill=col)
        if pid is not None:
            self.m.polygon(flat, fill=pid)
            self._ext(pts)

    def blob(self, c, rx: float, ry: float, col: tuple, pid: Optional[int]) -> None:
        box = [c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry]
        self.d.ellipse(box, fill=col)
        if pid is not None:
            self.m.ellipse(box, fill=pid)
            self._ext([c], max(rx, ry))

    def paint(self, pts, col: tuple, width: int = 1) -> None:
        """Image-only decoration (texture): does not change labels or extent."""
        self.d.line([tuple(p) for p in np.asarray(pts)], fill=col, width=max(1, int(width)))


def _ellipse_pts(c: np.ndarray, rx: float, ry: float, up: np.ndarray, right: np.ndarray,
                 a0: float = 0.0, a1: float = 2 * math.pi, n: int = 18) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return c + np.outer(np.cos(t) * rx, right) + np.outer(np.sin(t) * ry, up)


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, h: int, w: int):
    from PIL import Image, ImageDraw

    # smooth gradient + low-frequency colour blotches, built at 1/32 scale and upsampled
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    gh, gw = max(2, h // 32), max(2, w // 32)
    t = (np.cos(ang) * np.linspace(0, 1, gw)[None, :] + np.sin(ang) * np.linspace(0, 1, gh)[:, None])
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0 * (1 - t[..., None]) + c1 * t[..., None]
    bg = bg + rng.normal(0, rng.uniform(5, 35), (gh, gw, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)

    d = ImageDraw.Draw(img)
    s = min(h, w)
    for _ in range(int(rng.integers(6, 22))):
        kind = rng.integers(0, 5)
        col = _col(rng)
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        rx, ry = rng.uniform(0.03, 0.3) * s, rng.uniform(0.03, 0.3) * s
        if kind == 0:
            d.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 1:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 2:
            d.line([(cx, cy), (cx + rng.normal(0, rx * 2), cy + rng.normal(0, ry * 2))], fill=col,
                   width=int(rng.integers(1, max(2, s // 20))))
        elif kind == 3:
            n = int(rng.integers(3, 7))
            pts = np.stack([cx + rng.normal(0, rx, n), cy + rng.normal(0, ry, n)], 1)
            d.polygon([tuple(p) for p in pts], fill=col)
        else:   # stripes / grid texture patch
            step = int(rng.integers(3, 9))
            x0, y0 = int(cx - rx), int(cy - ry)
            for k in range(0, int(2 * ry), step):
                d.line([(x0, y0 + k), (x0 + 2 * rx, y0 + k)], fill=col, width=1)
    return img


# --------------------------------------------------------------------------- figures


def _pose(rng: np.random.Generator, height: float, hip: np.ndarray) -> dict:
    """Keypoints (17, 2), self-visibility (17,) in {0, 1, 2} and the geometry to draw."""
    h = height
    wmul = rng.uniform(0.8, 1.2)                       # body aspect
    foreshort = lambda: rng.uniform(0.55, 1.0) if rng.random() < 0.3 else 1.0  # noqa: E731
    L = {k: v * h * rng.uniform(0.93, 1.07) for k, v in
         dict(torso=0.29, neck=0.045, upper=0.165, fore=0.15, thigh=0.245, shin=0.235).items()}
    # torso lean from vertical; sometimes a strong bend
    lean = float(np.clip(rng.normal(0, 0.2), -0.5, 0.5))
    if rng.random() < 0.1:
        lean = rng.uniform(-1.2, 1.2)
    up = np.array([math.sin(lean), -math.cos(lean)])
    right = np.array([math.cos(lean), math.sin(lean)])
    down = -up
    # yaw: 0 = facing the camera; mostly frontal, some back and profile views
    u = rng.random()
    yaw = rng.uniform(-0.6, 0.6) if u < 0.5 else (rng.uniform(2.6, 3.7) if u < 0.7
                                                   else rng.uniform(-math.pi, math.pi))
    cy, sy = math.cos(yaw), math.sin(yaw)
    out_sign = 1.0 if cy >= 0 else -1.0                  # image side of the person's left
    hw_s, hw_h, thick = 0.115 * h * wmul, 0.08 * h * wmul, 0.06 * h * wmul

    kp = np.zeros((17, 2))
    selfv = np.full(17, 2)
    sh_c = hip + up * L["torso"]
    depth = {}
    for s in (+1, -1):
        depth[s] = -s * sy                               # > 0: this side is nearer
        i_sh, i_el, i_wr = (5, 7, 9) if s > 0 else (6, 8, 10)
        i_hp, i_kn, i_an = (11, 13, 15) if s > 0 else (12, 14, 16)
        kp[i_sh] = sh_c + right * (s * cy * hw_s)
        kp[i_hp] = hip + right * (s * cy * hw_h)
        # arm: abduction outward from 'down', elbow flexion either way
        abd = rng.uniform(-0.3, 2.9) if rng.random() < 0.45 else abs(rng.normal(0.15, 0.25))
        d1 = _turn(down, s * out_sign * abd)
        kp[i_el] = kp[i_sh] + d1 * L["upper"] * foreshort()
        flex = rng.uniform(0, 2.4) * (1 if rng.random() < 0.5 else -1)
        kp[i_wr] = kp[i_el] + _turn(d1, flex) * L["fore"] * foreshort()
        # leg
        hab = rng.uniform(-0.3, 0.6) if rng.random() < 0.75 else rng.uniform(-1.5, 1.5)
        d2 = _turn(down, s * out_sign * hab)
        kp[i_kn] = kp[i_hp] + d2 * L["thigh"] * foreshort()
        kflex = (rng.uniform(0, 0.35) if rng.random() < 0.7 else rng.uniform(0, 2.2))
        kp[i_an] = kp[i_kn] + _turn(d2, kflex * (1 if rng.random() < 0.5 else -1)) * L["shin"] * foreshort()

    # head: tilted ellipse above the neck; face points on a sphere turned by yaw
    tilt = float(np.clip(rng.normal(0, 0.2), -0.6, 0.6))
    hup = _turn(up, tilt)
    hright = np.array([-hup[1], hup[0]])
    if hright @ right < 0:
        hright = -hright
    rx, ry = 0.052 * h * rng.uniform(0.9, 1.1), 0.066 * h * rng.uniform(0.9, 1.1)
    neck_top = sh_c + up * L["neck"]
    head_c = neck_top + hup * ry * 0.85
    face = {0: (0.0, -0.15, 1.0), 1: (0.33, 0.2, 0.92), 2: (-0.33, 0.2, 0.92),
            3: (math.pi / 2, 0.05, 1.0), 4: (-math.pi / 2, 0.05, 1.0)}   # azimuth, elevation, radius
    fdepth = np.zeros(5)
    for i, (az, el, rad) in face.items():
        kp[i] = head_c + hright * (math.sin(az + yaw) * rx * rad) + hup * (el * ry)
        fdepth[i] = math.cos(az + yaw)
        if i <= 2:
            selfv[i] = 2 if fdepth[i] > 0.15 else (1 if fdepth[i] > -0.35 else 0)
        else:
            selfv[i] = 2 if fdepth[i] > -0.2 else (1 if fdepth[i] > -0.75 else 0)
    return dict(kp=kp, selfv=selfv, up=up, right=right, hip=hip, sh_c=sh_c, depth=depth,
                cy=cy, sy=sy, hw_s=hw_s, hw_h=hw_h, thick=thick, head_c=head_c, hup=hup,
                hright=hright, rx=rx, ry=ry, neck_top=neck_top, fdepth=fdepth, h=h)


def _draw_person(rng: np.random.Generator, cv: _Canvas, g: dict, pidx: int) -> None:
    kp, h, right, up = g["kp"], g["h"], g["right"], g["up"]
    base = 1 + 16 * pidx
    skin = _col(rng, _SKIN[rng.integers(len(_SKIN))], 8)
    hair = _col(rng, _HAIR[rng.integers(len(_HAIR))], 10)
    shirt, pants, shoes = _col(rng), _col(rng), _col(rng, np.array([40.0, 35, 30]), 25)
    sleeves = shirt if rng.random() < 0.6 else skin          # long or short sleeves
    legs_col = pants if rng.random() < 0.8 else skin
    striped = rng.random() < 0.35
    stripe_col = _shade(shirt, rng.uniform(0.4, 0.7)) if rng.random() < 0.5 else _col(rng)
    wm = rng.uniform(0.85, 1.2)
    W = dict(upper=0.055 * h * wm, fore=0.045 * h * wm, thigh=0.08 * h * wm, shin=0.06 * h * wm)

    def arm(s: int) -> None:
        i_sh, i_el, i_wr = (5, 7, 9) if s > 0 else (6, 8, 10)
        cv.limb(kp[i_sh], kp[i_el], W["upper"], sleeves, base + UPPER_ARM[s])
        cv.limb(kp[i_el], kp[i_wr], W["fore"], sleeves if rng.random() < 0.5 else skin,
                base + FOREARM[s])
        d = kp[i_wr] - kp[i_el]
        d = d / (np.linalg.norm(d) + 1e-9)
        cv.blob(kp[i_wr] + d * 0.02 * h, 0.026 * h, 0.026 * h, skin, base + FOREARM[s])
        if striped:
            for t in (0.35, 0.65):
                p = kp[i_sh] + (kp[i_el] - kp[i_sh]) * t
                n = np.array([-d[1], d[0]]) * W["upper"] * 0.45
                cv.paint([p - n, p + n], stripe_col, max(1, W["upper"] * 0.15))

    def leg(s: int) -> None:
        i_hp, i_kn, i_an = (11, 13, 15) if s > 0 else (12, 14, 16)
        cv.limb(kp[i_hp], kp[i_kn], W["thigh"], legs_col, base + THIGH[s])
        cv.limb(kp[i_kn], kp[i_an], W["shin"], legs_col, base + SHIN[s])
        foot_dir = right * (1 if rng.random() < 0.5 else -1)
        cv.blob(kp[i_an] + foot_dir * 0.03 * h + up * -0.01 * h, 0.045 * h, 0.022 * h, shoes,
                base + SHIN[s])

    far = [s for s in (+1, -1) if g["depth"][s] < -0.3]
    near = [s for s in (+1, -1) if s not in far]
    for s in far:
        leg(s)
        arm(s)
    for s in near:
        leg(s)

    # torso: shoulders/hips widened by the body's depth when turned sideways
    ext_s = abs(g["cy"]) * g["hw_s"] + abs(g["sy"]) * g["thick"] + 0.02 * h
    ext_h = abs(g["cy"]) * g["hw_h"] + abs(g["sy"]) * g["thick"] + 0.025 * h
    sh_c, hip = g["sh_c"], g["hip"]
    quad = np.array([sh_c - right * ext_s, sh_c + right * ext_s,
                     hip + right * ext_h, hip - right * ext_h])
    cv.limb(g["neck_top"], sh_c, 0.05 * h, skin, base + NECK)
    cv.poly(quad, shirt, base + TORSO)
    if striped:
        for t in np.linspace(0.15, 0.85, int(rng.integers(2, 6))):
            a = quad[0] + (quad[3] - quad[0]) * t
            b = quad[1] + (quad[2] - quad[1]) * t
            cv.paint([a, b], stripe_col, max(1, 0.015 * h))
    elif rng.random() < 0.3:   # a logo
        c = sh_c + (hip - sh_c) * 0.35
        cv.blob(c, 0.03 * h, 0.03 * h, _col(rng), None)

    # head, hair, ears, face
    hc, hup, hr, rx, ry = g["head_c"], g["hup"], g["hright"], g["rx"], g["ry"]
    fd = g["fdepth"]
    for i in (3, 4):
        if -0.75 < fd[i] <= 0:       # ear behind the head outline
            cv.blob(kp[i], 0.012 * h, 0.02 * h, _shade(skin, 0.9), base + HEAD)
    cv.poly(_ellipse_pts(hc, rx, ry, hup, hr), skin, base + HEAD)
    if g["cy"] < -0.2:               # seen from the back: hair everywhere
        cv.poly(_ellipse_pts(hc, rx, ry, hup, hr, -0.3, math.pi + 0.3), hair, None)
    else:
        cv.poly(_ellipse_pts(hc, rx, ry, hup, hr, 0.25, math.pi - 0.25), hair, None)
    for i in (3, 4):
        if fd[i] > 0:
            cv.blob(kp[i], 0.012 * h, 0.02 * h, _shade(skin, 0.9), base + HEAD)
    er = max(0.8, 0.008 * h)
    for i in (1, 2):
        if fd[i] > 0.15:
            cv.blob(kp[i], er, er, (25, 20, 20), None)
    if fd[0] > 0.15:
        cv.blob(kp[0], er * 1.2, er, _shade(skin, 0.75), None)

    for s in near:
        arm(s)


def _occluders(rng: np.random.Generator, cv: _Canvas, people: list[dict], h: int, w: int) -> None:
    for _ in range(int(rng.integers(1, 4))):
        g = people[int(rng.integers(len(people)))]
        c = g["kp"][int(rng.integers(17))] + rng.normal(0, 0.08 * g["h"], 2)
        r = rng.uniform(0.06, 0.2) * g["h"]
        col = _col(rng)
        kind = rng.integers(0, 3)
        if kind == 0:
            cv.blob(c, r, r * rng.uniform(0.5, 1.5), col, OCCLUDER)
        elif kind == 1:
            cv.poly(np.array([c - r, [c[0] + r, c[1] - r], c + r, [c[0] - r, c[1] + r]]) +
                    rng.normal(0, 0.2 * r, (4, 2)), col, OCCLUDER)
        else:
            n = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = r * rng.uniform(0.6, 1.2, n)
            cv.poly(c + np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1), col, OCCLUDER)
        if rng.random() < 0.4:   # texture on the occluder
            cv.paint([c - r * 0.7, c + r * 0.7], _shade(col, 0.5), max(1, r * 0.1))


def _distractors(rng: np.random.Generator, img, h: int, w: int) -> None:
    """Body-part-like shapes without labels (skin/cloth coloured sticks and ovals)."""
    from PIL import Image

    mask = Image.new("L", (w, h))
    cv = _Canvas(img, mask)
    s = min(h, w)
    for _ in range(int(rng.integers(0, 4))):
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        p1 = p0 + rng.normal(0, 0.12 * s, 2)
        col = _col(rng, _SKIN[rng.integers(len(_SKIN))], 10) if rng.random() < 0.5 else _col(rng)
        if rng.random() < 0.6:
            cv.limb(p0, p1, rng.uniform(0.02, 0.06) * s, col, 0)
        else:
            cv.blob(p0, rng.uniform(0.02, 0.06) * s, rng.uniform(0.03, 0.08) * s, col, 0)


def _finish(rng: np.random.Generator, img):
    """Blur, colour jitter and noise."""
    from PIL import Image, ImageFilter

    if rng.random() < 0.4:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    # saturation, contrast, brightness and per-channel gain as one 3x4 colour matrix
    sat, con = rng.uniform(0.6, 1.3), rng.uniform(0.75, 1.25)
    bright, gain = rng.uniform(-25, 25), rng.uniform(0.9, 1.1, 3)
    lum = np.array([0.299, 0.587, 0.114])
    mix = (1 - sat) * np.tile(lum, (3, 1)) + sat * np.eye(3)
    lin = gain[:, None] * con * mix
    off = gain * (128 * (1 - con) + bright)
    img = img.convert("RGB", tuple(float(v) for v in np.concatenate([lin, off[:, None]], 1).ravel()))
    sigma = rng.uniform(0, 8)
    if sigma > 1.5:
        a = np.asarray(img, dtype=np.int16)
        noise = rng.standard_normal(a.shape, dtype=np.float32) * np.float32(sigma)
        img = Image.fromarray(np.clip(a + noise.astype(np.int16), 0, 255).astype(np.uint8))
    return img


# --------------------------------------------------------------------------- one image


def render_image(rng: np.random.Generator, image_size: Sequence[int] = (256, 256),
                 min_people: int = 1, max_people: int = 3, occlusion_prob: float = 0.5):
    """One synthetic image: ``(PIL RGB image, [annotation dicts without ids])``."""
    from PIL import Image

    H, W = int(image_size[0]), int(image_size[1])
    if not 1 <= min_people <= max_people <= MAX_PEOPLE:
        raise ValueError(f"need 1 <= min_people <= max_people <= {MAX_PEOPLE}, got "
                         f"{min_people}, {max_people}")
    img = _background(rng, H, W)
    _distractors(rng, img, H, W)
    mask = Image.new("L", (W, H), 0)
    n = int(rng.integers(min_people, max_people + 1))
    figures: list[dict] = []
    for _ in range(n):
        size = rng.uniform(0.4, 0.95) * H / (1 + 0.25 * (n - 1))
        for _try in range(12):
            hip = np.array([rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.8) * H])
            g = _pose(rng, size, hip)
            inside = ((g["kp"][:, 0] >= 0) & (g["kp"][:, 0] < W) & (g["kp"][:, 1] >= 0)
                      & (g["kp"][:, 1] < H) & (g["selfv"] > 0))
            if inside.sum() >= 10:
                break
        else:
            continue   # no placement worked: leave this person out entirely
        figures.append(g)

    extents = []
    for p, g in enumerate(figures):
        cv = _Canvas(img, mask)
        _draw_person(rng, cv, g, p)
        extents.append((cv.lo.copy(), cv.hi.copy()))
    if figures and rng.random() < occlusion_prob:
        _occluders(rng, _Canvas(img, mask), figures, H, W)

    m = np.asarray(mask)
    counts = np.bincount(((m.astype(np.int32) - 1) // 16)[(m > 0) & (m < OCCLUDER)].ravel(),
                         minlength=MAX_PEOPLE + 1)
    anns = []
    for p, g in enumerate(figures):
        kp, selfv = g["kp"], g["selfv"]
        out = np.zeros((17, 3))
        for k in range(17):
            x, y = kp[k]
            if not (0 <= x < W and 0 <= y < H) or selfv[k] == 0:
                continue
            mv = int(m[min(H - 1, int(round(y))), min(W - 1, int(round(x)))])
            owned = mv in {1 + 16 * p + part for part in KEYPOINT_OWNERS[k]}
            v = 2 if (owned and selfv[k] == 2) else 1
            out[k] = (round(float(x), 2), round(float(y), 2), v)
        lo = np.clip(extents[p][0], 0, [W, H])
        hi = np.clip(extents[p][1], 0, [W, H])
        bw, bh = float(hi[0] - lo[0]), float(hi[1] - lo[1])
        nk = int((out[:, 2] > 0).sum())
        if nk == 0 or bw < 2 or bh < 2:
            continue
        bbox = [round(float(lo[0]), 2), round(float(lo[1]), 2), round(bw, 2), round(bh, 2)]
        area = float(counts[p]) if counts[p] > 0 else 0.6 * bw * bh
        x0, y0, x1, y1 = bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]
        anns.append({"bbox": bbox, "area": area, "keypoints": [float(v) for v in out.ravel()],
                     "num_keypoints": nk, "iscrowd": 0, "category_id": 1,
                     "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    return _finish(rng, img), anns


def coco_category() -> dict:
    return {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(s) for s in COCO_SKELETON]}


def generate(out_dir: PathLike, n_images: int, seed: int = 0,
             image_size: Sequence[int] = (256, 256), min_people: int = 1, max_people: int = 3,
             occlusion_prob: float = 0.5, jpeg_quality: int = 90,
             ann_name: str = "person_keypoints.json") -> str:
    """Write ``n_images`` synthetic images (``out_dir/images/000001.jpg`` ...) and their
    COCO person-keypoint annotations (``out_dir/<ann_name>``); returns the JSON path.

    ``image_size`` is (H, W).  Image ids are 1..n, annotation ids 1, 2, ... in
    image order.  Deterministic from (seed, image index).
    """
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    H, W = int(image_size[0]), int(image_size[1])
    images, annotations = [], []
    for i in range(n_images):
        rng = np.random.default_rng([int(seed), i])
        img, anns = render_image(rng, (H, W), min_people, max_people, occlusion_prob)
        name = f"{i + 1:06d}.jpg"
        img.save(img_dir / name, format="JPEG", quality=int(jpeg_quality))
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H})
        for a in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **a})
    data = {
        "info": {"description": "pose-tuner synthetic person keypoints",
                 "seed": int(seed), "n_images": int(n_images), "image_size": [H, W]},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [coco_category()],
    }
    ann_path = out / ann_name
    with open(ann_path, "w", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    return str(ann_path)

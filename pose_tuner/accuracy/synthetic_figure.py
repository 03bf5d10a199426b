"""One synthetic person: an articulated 2-D figure, its 17 COCO keypoints, and its drawing.

:func:`random_pose` samples the skeleton and :func:`draw_person` draws it on a
:class:`Canvas`, which paints the RGB image and a part-id mask together (mask id
``1 + 16 * person + part``; :data:`OCCLUDER` for occluders).  The scene around the
figures, the labels read back from the mask and the dataset files are
:mod:`pose_tuner.accuracy.synthetic`.

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
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = ["Canvas", "random_pose", "draw_person", "colour", "shade", "KEYPOINT_OWNERS",
           "OCCLUDER", "MAX_PEOPLE", "SKIN_TONES", "HAIR_COLOURS"]


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

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 135], [198, 134, 96],
                  [160, 105, 70], [120, 75, 50], [90, 56, 38]], dtype=np.float64)
HAIR_COLOURS = np.array([[20, 16, 14], [60, 40, 25], [110, 75, 40], [200, 170, 110],
                  [150, 60, 30], [180, 180, 180]], dtype=np.float64)


# --------------------------------------------------------------------------- helpers


def colour(rng: np.random.Generator, base: Optional[np.ndarray] = None, jitter: float = 0.0) -> tuple:
    c = rng.uniform(0, 255, 3) if base is None else base + rng.normal(0, jitter, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def shade(c: tuple, f: float) -> tuple:
    return tuple(int(min(255, max(0, v * f))) for v in c)


def _turn(v: np.ndarray, a: float) -> np.ndarray:
    """Rotate ``v`` by ``a`` so that positive turns 'down' (0, 1) toward 'right' (1, 0)."""
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] + s * v[1], -s * v[0] + c * v[1]])


class Canvas:
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

# --------------------------------------------------------------------------- figures


def random_pose(rng: np.random.Generator, height: float, hip: np.ndarray) -> dict:
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


def draw_person(rng: np.random.Generator, cv: Canvas, g: dict, pidx: int) -> None:
    kp, h, right, up = g["kp"], g["h"], g["right"], g["up"]
    base = 1 + 16 * pidx
    skin = colour(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 8)
    hair = colour(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 10)
    shirt, pants, shoes = colour(rng), colour(rng), colour(rng, np.array([40.0, 35, 30]), 25)
    sleeves = shirt if rng.random() < 0.6 else skin          # long or short sleeves
    legs_col = pants if rng.random() < 0.8 else skin
    striped = rng.random() < 0.35
    stripe_col = shade(shirt, rng.uniform(0.4, 0.7)) if rng.random() < 0.5 else colour(rng)
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
        cv.blob(c, 0.03 * h, 0.03 * h, colour(rng), None)

    # head, hair, ears, face
    hc, hup, hr, rx, ry = g["head_c"], g["hup"], g["hright"], g["rx"], g["ry"]
    fd = g["fdepth"]
    for i in (3, 4):
        if -0.75 < fd[i] <= 0:       # ear behind the head outline
            cv.blob(kp[i], 0.012 * h, 0.02 * h, shade(skin, 0.9), base + HEAD)
    cv.poly(_ellipse_pts(hc, rx, ry, hup, hr), skin, base + HEAD)
    if g["cy"] < -0.2:               # seen from the back: hair everywhere
        cv.poly(_ellipse_pts(hc, rx, ry, hup, hr, -0.3, math.pi + 0.3), hair, None)
    else:
        cv.poly(_ellipse_pts(hc, rx, ry, hup, hr, 0.25, math.pi - 0.25), hair, None)
    for i in (3, 4):
        if fd[i] > 0:
            cv.blob(kp[i], 0.012 * h, 0.02 * h, shade(skin, 0.9), base + HEAD)
    er = max(0.8, 0.008 * h)
    for i in (1, 2):
        if fd[i] > 0.15:
            cv.blob(kp[i], er, er, (25, 20, 20), None)
    if fd[0] > 0.15:
        cv.blob(kp[0], er * 1.2, er, shade(skin, 0.75), None)

    for s in near:
        arm(s)

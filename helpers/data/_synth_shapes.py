"""Drawing for ``synthetic``: chest radiographs with opacities, neck CT slices with cracks.

Private: ``helpers.data.synthetic`` is the public entry point. Every function takes a seeded
numpy Generator and draws from it in a fixed order, so the pictures repeat exactly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates as a (1,size) row and a (size,1) column, float32."""
    g = np.arange(size, dtype=np.float32) + 0.5
    return g[None, :], g[:, None]


def _smoothstep(m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0.0, 1.0)
    return m * m * (3.0 - 2.0 * m)


def _soft_ellipse(x, y, cx: float, cy: float, rx: float, ry: float, soft: float,
                  power: float = 2.0) -> np.ndarray:
    """1 inside the (super)ellipse, 0 outside, with a smooth rim of relative width ``soft``."""
    # The powers act on 1-D arrays; only their broadcast sum costs a full-size pass.
    q = np.abs((x - cx) / rx) ** power + np.abs((y - cy) / ry) ** power
    r = np.sqrt(q) if power == 2.0 else q ** (1.0 / power)
    return _smoothstep((1.0 - r) / soft)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Low-frequency noise in [0,1]: a cells x cells random grid upsampled bicubically."""
    grid = rng.random((cells, cells), dtype=np.float32)
    field = np.asarray(Image.fromarray(grid).resize((shape[1], shape[0]), Image.BICUBIC))
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


# ---------------------------------------------------------------- chest radiographs


def chest_anatomy(rng: np.random.Generator) -> dict:
    """Per-patient chest geometry in units of the image side (so any size draws alike)."""
    sx = rng.uniform(0.94, 1.06)
    cx, cy = 0.5 + rng.normal(0, 0.012), 0.47 + rng.normal(0, 0.012)
    lungs = []
    for side in (-1, 1):
        lungs.append((cx + side * 0.2 * sx + rng.normal(0, 0.005), cy + rng.normal(0, 0.008),
                      0.165 * sx * rng.uniform(0.95, 1.05), 0.29 * rng.uniform(0.95, 1.05)))
    return {"cx": cx, "cy": cy, "sx": sx, "lungs": lungs, "heart": rng.uniform(0.15, 0.19),
            "gain": rng.uniform(0.9, 1.1), "offset": rng.uniform(-0.03, 0.03),
            "ribs": rng.uniform(12.0, 15.0)}


def sample_lung_box(rng: np.random.Generator, lung: tuple, zone: str, size: int) -> tuple:
    """A box (x, y, width, height) in pixels inside one lung field, skewed small."""
    lcx, lcy, rx, ry = lung
    top, bottom = {"all": (-0.8, 0.95), "upper": (-0.8, 0.0), "lower": (0.0, 0.95)}[zone]
    top, bottom = lcy + top * ry, lcy + bottom * ry
    left, right = lcx - 0.95 * rx, lcx + 0.95 * rx
    # Widths about 80-400 px at 1024 (median ~200), heights a bit taller than wide.
    w = min(float(np.clip(np.exp(rng.normal(np.log(0.195), 0.38)), 0.078, 0.39)), right - left)
    h = min(w * rng.uniform(1.0, 1.8), 0.95 * (bottom - top))
    bx = rng.uniform(left, max(left, right - w))
    by = rng.uniform(top, max(top, bottom - h))
    width, height = max(4, round(w * size)), max(4, round(h * size))
    x = int(np.clip(round(bx * size), 0, size - width))
    y = int(np.clip(round(by * size), 0, size - height))
    return x, y, width, height


def _lung(x, y, lcx: float, lcy: float, rx: float, ry: float) -> np.ndarray:
    """A lung field: narrow at the apex, widest above the domed diaphragm."""
    t = (y - lcy) / ry
    widen = 0.7 + 0.18 * np.clip(t + 1.0, 0.0, 2.0)
    r = np.sqrt(((x - lcx) / (rx * widen)) ** 2 + t * t)
    return _smoothstep((1.0 - r) / 0.25)


def draw_chest(rng: np.random.Generator, a: dict, size: int) -> np.ndarray:
    """A chest-radiograph-like float32 image in about [0,1]: body, lungs, ribs, heart, spine."""
    # The anatomy is smooth: draw it at <= 128 px and upsample, which keeps 1024 px fast.
    base = min(size, 128)
    x, y = _grid(base)
    x, y = x / base, y / base
    cx, cy, sx = a["cx"], a["cy"], a["sx"]
    torso = _soft_ellipse(x, y, cx, cy + 0.2, 0.48 * sx, 0.7, 0.05, power=3.0)
    tissue = np.maximum(torso, _soft_ellipse(x, y, cx, 0.0, 0.1 * sx, 0.2, 0.3))
    img = 0.04 + 0.42 * tissue
    lung = np.maximum(*(_lung(x, y, *lung) for lung in a["lungs"]))
    img -= lung * (0.27 - 0.08 * smooth_noise(rng, (base, base), 20))  # vessel markings
    # Ribs: bands that sag laterally over the thorax, seen mostly through the lungs.
    ax = np.abs(x - cx)
    thorax = _soft_ellipse(x, y, cx, cy, 0.44 * sx, 0.36, 0.3)
    ribs = 0.5 + 0.5 * np.cos((y + 0.45 * ax - 0.6 * ax * ax) * (2 * np.pi * a["ribs"]))
    img += (0.015 + 0.06 * lung) * ribs * ribs * thorax
    clavicle = np.clip(1.0 - np.abs(y - (cy - 0.28) + 0.2 * ax - 0.3 * ax * ax) / 0.014, 0, 1)
    img += 0.07 * clavicle * ((ax > 0.03) & (ax < 0.3 * sx))
    mediastinum = _soft_ellipse(x, y, cx, cy - 0.04, 0.09 * sx, 0.42, 0.5, power=4.0)
    heart = _soft_ellipse(x, y, cx + 0.05, cy + 0.17, a["heart"] * sx, 0.14, 0.6)
    img += 0.22 * np.maximum(mediastinum, heart)
    spine = np.clip(1.0 - ax / (0.028 * sx), 0.0, 1.0) * (y > cy - 0.4)
    img += 0.06 * spine + 0.05 * smooth_noise(rng, (base, base), 8) - 0.025
    if base != size:
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    # Uniform noise of the same spread as a gaussian: a third of the cost at 1024 px.
    noise = rng.random((size, size), dtype=np.float32) - 0.5
    return (img + noise * (0.018 * 12**0.5)) * a["gain"] + a["offset"]


def add_opacity(rng: np.random.Generator, img: np.ndarray, box: tuple) -> None:
    """Brighten a soft, textured cloud that fills most of the box (and stays inside it)."""
    x, y, w, h = box
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2 - 1
    v = (np.arange(h, dtype=np.float32) + 0.5) / h * 2 - 1
    # |u|^2.5 + |v|^2.5 is a rounded square: the cloud reaches into the box corners.
    q = (np.abs(u) ** 2.5)[None, :] + (np.abs(v) ** 2.5)[:, None]
    m = np.clip((1.0 - q) / 0.9, 0.0, 1.0)
    texture = 0.45 + 0.55 * smooth_noise(rng, (h, w), int(rng.integers(3, 7)))
    patch = img[y:y + h, x:x + w]
    # Screen-like blend: bright where the lung is dark, never saturating.
    patch += rng.uniform(0.26, 0.36) * m * m * (3 - 2 * m) * texture * (1.0 - patch)


# ---------------------------------------------------------------- cervical-spine CT slices


def neck_anatomy(rng: np.random.Generator, size: int) -> dict:
    """Per-study neck geometry in pixels, with the slow drift of the spine along the study."""
    s = size / 256
    return {"s": s, "nc": (size / 2 + rng.normal(0, 4 * s), (118 + rng.normal(0, 4)) * s),
            "nr": (rng.uniform(86, 100) * s, rng.uniform(70, 84) * s),
            "body": (rng.uniform(17, 22) * s, rng.uniform(13, 16) * s),
            "canal": rng.uniform(8, 10) * s, "arch": rng.uniform(4.5, 6.0) * s,
            "airway": rng.uniform(7, 11) * s, "drift": rng.uniform(1.5, 3.5) * s,
            "period": rng.uniform(40, 80), "phase": rng.uniform(0, 2 * np.pi),
            "level": rng.uniform(9, 13), "trabecular": smooth_noise(rng, (size, size), size // 5)}


def draw_neck(rng: np.random.Generator, a: dict, t: int, size: int) -> tuple[np.ndarray, dict]:
    """Slice t of a study: neck soft tissue, airway, vertebral body, arch; and its geometry."""
    x, y = _grid(size)
    s, (ncx, ncy), (nrx, nry) = a["s"], a["nc"], a["nr"]
    ang = 2 * np.pi * t / a["period"] + a["phase"]
    bcx = ncx + a["drift"] * np.sin(ang)
    bcy = ncy + 10 * s + 0.6 * a["drift"] * np.cos(ang)
    grow = 1 + 0.04 * np.sin(2 * np.pi * t / a["level"] + a["phase"])  # vertebral levels
    brx, bry = a["body"][0] * grow, a["body"][1] * grow
    neck = _soft_ellipse(x, y, ncx, ncy, nrx, nry, 3 * s / nry)
    fat = neck - _soft_ellipse(x, y, ncx, ncy, nrx - 7 * s, nry - 7 * s, 4 * s / nry)
    img = 0.02 + 0.32 * neck - 0.07 * fat
    for side in (-1, 1):  # paraspinal muscles
        img += 0.05 * _soft_ellipse(x, y, bcx + side * 30 * s, bcy + 34 * s, 22 * s, 17 * s, 0.5)
    airway = _soft_ellipse(x, y, bcx, bcy - 44 * s, a["airway"], a["airway"] * 0.8, 0.3)
    img = img * (1 - airway) + 0.03 * airway
    ccy = bcy + bry + a["canal"] + 3 * s
    rc, th = a["canal"], a["arch"]
    outer = _soft_ellipse(x, y, bcx, ccy, rc + th, (rc + th) * 0.9, 1.5 * s / (rc + th))
    ring = np.clip(outer - _soft_ellipse(x, y, bcx, ccy, rc, rc * 0.9, 1.5 * s / rc), 0, 1)
    spinous = _soft_ellipse(x, y, bcx, ccy + rc + th + 6 * s, 3.5 * s, 9 * s, 0.4)
    processes = np.maximum(*(_soft_ellipse(x, y, bcx + side * (brx + 9 * s), bcy + 6 * s,
                                           10 * s, 4.5 * s, 0.4) for side in (-1, 1)))
    body = _soft_ellipse(x, y, bcx, bcy, brx, bry, 1.5 * s / bry)
    inner = _soft_ellipse(x, y, bcx, bcy, brx - 2.5 * s, bry - 2.5 * s, 1.5 * s / bry)
    cancellous = 0.58 + 0.16 * (a["trabecular"] - 0.5)
    img = img * (1 - body) + cancellous * body
    img = np.maximum(img, 0.92 * np.maximum.reduce([body - inner, ring, spinous, processes]))
    img += rng.standard_normal((size, size), dtype=np.float32) * 0.02
    geo = {"s": s, "body": (bcx, bcy, brx, bry), "canal": (bcx, ccy, rc, th),
           "bone": body, "ring": ring}
    return img, geo


def fracture_plan(rng: np.random.Generator, length: int, size: int, max_runs: int = 2,
                  run_slices: tuple[int, int] = (3, 10), width: tuple[float, float] = (1, 3.4),
                  depth: tuple[float, float] = (0.75, 0.95), half: tuple[float, float] = (0.6, 1.3),
                  arch_p: float = 0.35) -> dict[int, list[dict]]:
    """Which slices of a study show which cracks: 1-2 runs of ``run_slices`` slices (3-10),
    some also through the arch; ``width`` (px at 256) and ``depth`` (share of the bone's
    density lost) say how plainly a crack shows."""
    n_runs = 2 if max_runs >= 2 and length >= 16 and rng.random() < 0.6 else 1
    plan: dict[int, list[dict]] = {}
    s = size / 256
    for r in range(n_runs):
        a, b = r * length // n_runs, (r + 1) * length // n_runs
        run = min(int(rng.integers(run_slices[0], run_slices[1] + 1)), b - a)
        start = int(rng.integers(a, b - run + 1))
        crack = {"kind": "body", "angle": rng.uniform(0, np.pi), "u": rng.uniform(-0.4, 0.4),
                 "v": rng.uniform(-0.3, 0.3), "half": rng.uniform(*half),
                 "width": max(1.0, round(rng.uniform(*width)) * s),
                 "depth": rng.uniform(*depth)}
        arch = None
        if rng.random() < arch_p:  # a second crack through the posterior arch
            arch = {"kind": "arch", "angle": rng.uniform(0.15, 0.85) * np.pi,
                    "width": max(1.0, round(rng.uniform(1, 2.4)) * s),
                    "depth": rng.uniform(depth[0] - 0.05, depth[1] - 0.1)}
        for k in range(run):
            # Longest in the middle of the run, where the slice cuts the fracture squarely.
            bell = 0.6 + 0.4 * np.sin(np.pi * (k + 0.5) / run)
            plan[start + k] = [dict(crack, half=crack["half"] * bell,
                                    u=crack["u"] + 0.015 * k)]
            if arch is not None and 0 < k < run - 1:
                plan[start + k].append(arch)
    return plan


def draw_crack(img: np.ndarray, geo: dict, crack: dict, margin: float = 3,
               least: float = 8) -> np.ndarray:
    """Darken a thin line through bone in place; return its [x1,y1,x2,y2] box (zeros if
    none): the crack's extent plus ``margin`` px, at least ``least`` px a side (at 256)."""
    x, y = _grid(img.shape[0])
    s = geo["s"]
    if crack["kind"] == "body":
        bcx, bcy, brx, bry = geo["body"]
        px, py = bcx + crack["u"] * brx, bcy + crack["v"] * bry
        cos, sin = np.cos(crack["angle"]), np.sin(crack["angle"])
        half, bone = crack["half"] * max(brx, bry), geo["bone"]
    else:  # radial, across the ring of the arch
        ccx, ccy, rc, th = geo["canal"]
        cos, sin = np.cos(crack["angle"]), np.sin(crack["angle"])
        px, py = ccx + (rc + th / 2) * cos, ccy + 0.9 * (rc + th / 2) * sin
        half, bone = 0.9 * th, geo["ring"]
    across = np.abs((x - px) * -sin + (y - py) * cos)
    along = np.abs((x - px) * cos + (y - py) * sin)
    m = np.clip(crack["width"] / 2 + 0.5 - across, 0.0, 1.0) * (along <= half) * bone
    img -= crack["depth"] * m * (img - 0.28)  # bone gives way to soft-tissue density
    ys, xs = np.nonzero(m > 0.25)
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    margin, least = margin * s, least * s
    x1, x2 = xs.min() - margin, xs.max() + 1 + margin
    y1, y2 = ys.min() - margin, ys.max() + 1 + margin
    if x2 - x1 < least:
        x1, x2 = (x1 + x2 - least) / 2, (x1 + x2 + least) / 2
    if y2 - y1 < least:
        y1, y2 = (y1 + y2 - least) / 2, (y1 + y2 + least) / 2
    size = img.shape[0]
    return np.array([max(x1, 0), max(y1, 0), min(x2, size), min(y2, size)], np.float32)

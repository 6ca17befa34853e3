"""COCO box mAP on a few thousand images: helpers.metrics.coco_map against pycocotools.

* ``coco_map``            - helpers.metrics.coco_map as shipped (faster-coco-eval when it is
  installed, pycocotools otherwise).
* ``coco_map pycocotools`` - the same function forced onto the pycocotools backend: separates
  the cost of the evaluation engine from the cost of the conversion to COCO json.
* ``pycocotools direct``  - what a notebook would write by hand: build the COCO json image by
  image, ``COCO`` + ``loadRes`` + ``COCOeval`` evaluate / accumulate / summarize.

Every variant starts from the same lists of tensor dicts (the model's output format), so
each pays for its own conversion. They run interleaved in each round, so the noise of a
shared machine hits them alike; the report gives medians, ratios and the largest absolute
difference between the 12 summary statistics.

    .venv/bin/python bench/bench_coco_map.py [--images 3000] [--rounds 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import time

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from helpers.metrics import COCO_STAT_NAMES, coco_map


def make_data(n_images: int, seed: int, size: float = 256.0):
    """Lesion-like boxes: 1-3 per image (20-90 px sides), 5-20 predictions, some on target."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n_gt, n_pred = int(rng.integers(1, 4)), int(rng.integers(5, 21))
        wh = rng.uniform(20, 90, (n_gt, 2))
        xy = rng.uniform(0, size - wh)
        gt = np.c_[xy, xy + wh]
        pr_wh = rng.uniform(10, 100, (n_pred, 2))
        pr_xy = rng.uniform(0, size - pr_wh)
        pr = np.c_[pr_xy, pr_xy + pr_wh]
        scores = rng.beta(1.2, 4.0, n_pred)  # most boxes are low-confidence clutter
        hit = rng.uniform(size=n_gt) < 0.8  # the detector finds ~80 % of lesions
        k = int(hit.sum())
        pr[:k] = gt[hit] + rng.normal(0, 0.08, (k, 1)) * np.c_[wh[hit], wh[hit]]
        scores[:k] = rng.beta(5.0, 1.5, k)
        pr = np.clip(pr, 0, size)
        pr[:, 2:] = np.maximum(pr[:, 2:], pr[:, :2] + 1)
        targets.append({"boxes": torch.tensor(gt, dtype=torch.float32),
                        "labels": torch.ones(n_gt, dtype=torch.int64)})
        preds.append({"boxes": torch.tensor(pr, dtype=torch.float32),
                      "scores": torch.tensor(scores, dtype=torch.float32),
                      "labels": torch.ones(n_pred, dtype=torch.int64)})
    return preds, targets


def pycocotools_direct(preds, targets) -> dict[str, float]:
    """The hand-written pycocotools path: json per image, COCO, loadRes, COCOeval."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i + 1})
        for x1, y1, x2, y2 in t["boxes"].tolist():
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        for (x1, y1, x2, y2), s in zip(p["boxes"].tolist(), p["scores"].tolist(), strict=True):
            dets.append({"image_id": i + 1, "category_id": 1, "score": s,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": 1, "name": "lesion"}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (math.nan if s < 0 else float(s))
            for k, s in zip(COCO_STAT_NAMES, ev.stats[:12], strict=True)}


def max_abs_diff(a: dict, b: dict) -> float:
    """Largest |a - b| over the statistics; inf when one is undefined (NaN) and not the other."""
    diffs = [0.0 if math.isnan(a[k]) and math.isnan(b[k]) else abs(a[k] - b[k]) for k in a]
    return max(math.inf if math.isnan(d) else d for d in diffs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000, help="images (3000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (0)")
    args = parser.parse_args(argv)

    preds, targets = make_data(args.images, args.seed)
    variants = {
        "coco_map": lambda: coco_map(preds, targets),
        "coco_map pycocotools": lambda: coco_map(preds, targets, backend="pycocotools"),
        "pycocotools direct": lambda: pycocotools_direct(preds, targets),
    }
    try:
        import faster_coco_eval
        engine = f"faster-coco-eval {faster_coco_eval.__version__}"
    except ImportError:
        engine = "pycocotools (faster-coco-eval not installed)"
    coco_map(preds[:50], targets[:50])  # warm-up: lazy imports, first allocations
    pycocotools_direct(preds[:50], targets[:50])
    times = {name: [] for name in variants}
    results = {}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)

    n_gt = sum(len(t["boxes"]) for t in targets)
    n_pred = sum(len(p["boxes"]) for p in preds)
    print(f"{args.images} images, {n_gt} lesions, {n_pred} predictions, {args.rounds} rounds; "
          f"coco_map engine: {engine}")
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{'variant':<22}{'s (median)':>12}{'all rounds':>28}")
    for name, t in med.items():
        print(f"{name:<22}{t:>12.3f}   {', '.join(f'{x:.3f}' for x in times[name]):>25}")
    ref = results["pycocotools direct"]
    print(f"map {ref['map']:.4f}, map_50 {ref['map_50']:.4f}, mar_100 {ref['mar_100']:.4f}")
    print(f"coco_map vs pycocotools direct: {med['pycocotools direct'] / med['coco_map']:.1f}x "
          f"faster (target >= 3x), max |diff| {max_abs_diff(results['coco_map'], ref):.2e} "
          f"(target <= 1e-6)")
    print(f"coco_map pycocotools vs direct: "
          f"{med['pycocotools direct'] / med['coco_map pycocotools']:.1f}x, "
          f"max |diff| {max_abs_diff(results['coco_map pycocotools'], ref):.2e}")


if __name__ == "__main__":
    main()

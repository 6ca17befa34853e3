"""Detection metrics: how good are the boxes, and good for what?

A detector outputs boxes with confidence scores; a radiologist wants to know how many
lesions it finds and how many false alarms it raises. Each metric here answers one
version of that question:

* **IoU** (``box_iou``): overlap of two boxes, area of intersection / area of union.
  Disjoint or touching boxes have IoU 0, identical boxes 1.
* **Matching** (``match_detections``, built on ``helpers.matching``): which prediction found
  which lesion. Predictions are taken in descending score order; each takes the best
  still-unmatched ground-truth box of its class with IoU >= the threshold (as pycocotools
  does). Each lesion is found at most once, so a duplicate box on the same lesion is a
  false positive.
* **Precision / recall at one score threshold** (``precision_recall``): the operating
  point a clinic would deploy. Precision = share of alarms that are lesions, recall =
  share of lesions found. ``threshold_sweep`` shows the trade-off as the threshold moves.
* **COCO mAP** (``coco_map``): average precision over *all* thresholds (the area under the
  precision-recall curve), averaged over IoU 0.50:0.95. It ranks detectors without
  choosing an operating point, so a model can have a good AP and still be unusable at
  the threshold you pick, and the other way round. Computed by pycocotools (or the
  identical, faster faster-coco-eval), never by hand.
* **RSNA metric** (``rsna_metric``): the 2018 Kaggle pneumonia score. Per image, the mean
  over IoU thresholds 0.40...0.75 of TP / (TP + FP + FN), then averaged over images. It
  judges the submitted boxes *as they are* (no curve over thresholds), so the score
  threshold matters, and every image weighs the same: one false alarm on a healthy
  image costs as much as missing a whole image's lesions.
* **Recall by size** and the **image-level report** ask where the misses are and
  whether the model at least tells sick images from healthy ones.
* **Bootstrap confidence interval** (``bootstrap_ci``): how much a number would move on
  another sample of patients. Whole groups (studies, patients) are resampled, because the
  slices of one patient are not independent observations.

Conventions: predictions and targets are lists (one entry per image) of dicts holding
``boxes`` [N, 4] as [x1, y1, x2, y2] pixels, predictions also ``scores`` [N]. ``labels``
are optional; missing labels mean every box is the lesion class 1. Boxes only match
boxes with the same label. A ratio whose denominator is zero (precision with no
predictions, recall with no lesions) is NaN, like scikit-learn's ``zero_division=np.nan``.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torchvision.ops
from sklearn.metrics import classification_report, confusion_matrix, roc_auc_score

from helpers.matching import (
    BoxSet,
    MatchResult,
    box_set,
    greedy_match,
    image_pairs,
    match_image,
    match_images,
    score_ordered_ious,
)

__all__ = ["COCO_STAT_NAMES", "RSNA_IOU_THRESHOLDS", "SIZE_BINS", "best_f1_threshold",
           "bootstrap_ci", "box_iou",
           "coco_map", "image_level_report", "match_detections", "precision_recall",
           "recall_by_size", "rsna_metric", "threshold_sweep", "to_coco"]

RSNA_IOU_THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75)
SIZE_BINS = (0.0, 32.0, 64.0, 128.0, math.inf)
COCO_STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                   "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def box_iou(a, b) -> torch.Tensor:
    """IoU matrix [N, M] of boxes a [N, 4] and b [M, 4] in [x1, y1, x2, y2] (torchvision)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    for name, boxes in (("a", a), ("b", b)):
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise ValueError(f"box_iou: {name} has shape {tuple(boxes.shape)}, expected [N, 4]")
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    return torchvision.ops.box_iou(a.to(dtype), b.to(dtype))


def match_detections(pred: Mapping, gt: Mapping, iou_thresh: float = 0.5,
                     score_thresh: float = 0.0) -> MatchResult:
    """Match one image's predictions (score >= score_thresh) to its ground truth, greedily."""
    p, t = box_set(pred, "pred", True), box_set(gt, "gt", False)
    return match_image(p, t, iou_thresh, score_thresh)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _pr_row(tp: int, fp: int, fn: int) -> dict:
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn}


def precision_recall(preds: Sequence[Mapping], targets: Sequence[Mapping],
                     score_thresh: float = 0.5, iou_thresh: float = 0.5) -> dict:
    """Precision, recall, F1 and TP/FP/FN counts over all images at one score threshold."""
    matches = match_images(preds, targets, iou_thresh, score_thresh)
    return _pr_row(sum(m.tp for m in matches), sum(m.fp for m in matches),
                   sum(m.fn for m in matches))


def threshold_sweep(preds: Sequence[Mapping], targets: Sequence[Mapping],
                    thresholds: Sequence[float] | None = None,
                    iou_thresh: float = 0.5) -> pd.DataFrame:
    """Precision, recall, F1, TP/FP/FN at each score threshold (default 0.05, 0.10, ..., 0.95)."""
    # Greedy matching visits predictions in score order, so the predictions kept by a
    # higher threshold are a prefix and their matches do not change: match once, count.
    matches = match_images(preds, targets, iou_thresh, -math.inf)
    scores = np.concatenate([m.scores for m in matches] + [np.zeros(0)])
    is_tp = np.concatenate([m.is_tp for m in matches] + [np.zeros(0, bool)])
    n_gt = sum(len(m.detected) for m in matches)
    order = np.argsort(scores, kind="stable")
    scores, tp_below = scores[order], np.concatenate([[0], np.cumsum(is_tp[order])])
    if thresholds is None:
        thresholds = np.round(np.arange(1, 20) * 0.05, 2)
    rows = []
    for t in thresholds:
        below = int(np.searchsorted(scores, t, side="left"))  # predictions with score < t
        tp = int(tp_below[-1] - tp_below[below])
        rows.append({"threshold": float(t), **_pr_row(tp, len(scores) - below - tp, n_gt - tp)})
    return pd.DataFrame(rows, columns=["threshold", "precision", "recall", "f1", "tp", "fp", "fn"])


def best_f1_threshold(sweep: pd.DataFrame, default: float | None = 0.5) -> float | None:
    """The threshold of a sweep's highest F1 (first on ties); ``default`` if no F1 is above 0."""
    f1 = sweep["f1"].fillna(0)
    return float(sweep.loc[f1.idxmax(), "threshold"]) if f1.max() > 0 else default


def _coco_backend(backend: str):
    if backend in ("auto", "faster_coco_eval"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
            return COCO, COCOeval_faster, "faster_coco_eval"
        except ImportError:
            if backend != "auto":
                raise
    if backend not in ("auto", "pycocotools"):
        raise ValueError(f"backend {backend!r}: expected 'auto', 'pycocotools' or "
                         "'faster_coco_eval'")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval, "pycocotools"


def _xywh_columns(parts: list[np.ndarray]) -> tuple[list, list]:
    boxes = np.concatenate(parts + [np.zeros((0, 4))])
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.hstack([boxes[:, :2], wh]).tolist(), np.prod(wh, axis=1).tolist()


def to_coco(preds: Sequence[Mapping], targets: Sequence[Mapping]) -> tuple[dict, list[dict]]:
    """COCO ground-truth dict and detection results (image id = list index + 1, bbox xywh)."""
    columns: dict[str, list] = {k: [] for k in ("gb", "gl", "gi", "pb", "ps", "pl", "pi")}
    for i, (pb, ps, pl), (gb, _, gl) in image_pairs(preds, targets):
        for key, value in (("gb", gb), ("gl", gl), ("pb", pb), ("ps", ps), ("pl", pl)):
            columns[key].append(value)
        columns["gi"].append(np.full(len(gb), i + 1))
        columns["pi"].append(np.full(len(pb), i + 1))
    # one tolist() per column: converting per box costs more than COCOeval itself
    flat = {k: np.concatenate(v + [np.zeros(0, np.int64)]).tolist()
            for k, v in columns.items() if k not in ("gb", "pb")}
    gt_boxes, gt_areas = _xywh_columns(columns["gb"])
    pred_boxes, pred_areas = _xywh_columns(columns["pb"])
    # ids start at 1: pycocotools treats a matched ground truth with id 0 as unmatched
    anns = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "area": a, "iscrowd": 0}
            for n, (i, c, b, a) in enumerate(zip(flat["gi"], flat["gl"], gt_boxes, gt_areas,
                                                 strict=True))]
    # id, area and iscrowd are what COCO.loadRes would add to a box result
    dets = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": b, "score": s, "area": a,
             "iscrowd": 0} for n, (i, c, b, s, a) in
            enumerate(zip(flat["pi"], flat["pl"], pred_boxes, flat["ps"], pred_areas, strict=True))]
    cats = sorted(set(flat["gl"]) | set(flat["pl"])) or [1]
    return {"images": [{"id": i + 1} for i in range(len(targets))], "annotations": anns,
            "categories": [{"id": c, "name": f"class {c}"} for c in cats]}, dets


def coco_map(preds: Sequence[Mapping], targets: Sequence[Mapping], verbose: bool = False,
             backend: str = "auto") -> dict[str, float]:
    """COCO box AP/AR (map, map_50, map_75, by size, mar_1/10/100) via pycocotools' COCOeval.

    COCO rules: IoU 0.50:0.05:0.95, at most 100 boxes per image (the highest scored),
    absolute size ranges (side < 32 px, 32-96, > 96; see ``recall_by_size``), categories
    averaged. ``backend="auto"`` uses faster-coco-eval when installed (same numbers, loops
    in C++) and pycocotools otherwise. A value pycocotools reports as -1 (no ground truth
    in that size range) is returned as NaN; with no predictions at all the rest are 0.
    """
    coco_cls, eval_cls, name = _coco_backend(backend)
    gt_dict, dets = to_coco(preds, targets)
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if not verbose else contextlib.nullcontext():
        gt = coco_cls()
        gt.dataset = gt_dict
        gt.createIndex()
        # Not gt.loadRes(dets): it fails on an empty list and spends much of the run
        # drawing polygons that box IoU never reads; the fields it adds are in `dets`.
        dt = coco_cls()
        dt.dataset = {**gt_dict, "annotations": dets}
        dt.createIndex()
        extra = {"print_function": print} if verbose and name == "faster_coco_eval" else {}
        ev = eval_cls(gt, dt, "bbox", **extra)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {k: (math.nan if s < 0 else float(s)) for k, s in
            zip(COCO_STAT_NAMES, ev.stats[:12], strict=True)}


def rsna_metric(preds: Sequence[Mapping], targets: Sequence[Mapping],
                score_thresh: float = 0.0) -> float:
    """RSNA Pneumonia 2018 score: per image mean over IoU 0.40..0.75 of TP/(TP+FP+FN).

    A hit needs IoU > t (strictly), predictions taken in descending score order, each
    ground-truth box hit at most once. Images with neither ground truth nor predictions
    (score >= score_thresh) are skipped; if every image is skipped the result is NaN.
    """
    per_image = []
    for _, pred, gt in image_pairs(preds, targets):
        keep = pred.scores >= score_thresh
        if not keep.any() and len(gt.boxes) == 0:
            continue
        kept = BoxSet(pred.boxes[keep], pred.scores[keep], pred.labels[keep])
        _, ious = score_ordered_ious(kept, gt)
        values = []
        for t in RSNA_IOU_THRESHOLDS:
            matched, _ = greedy_match(ious, t, strict=True)
            tp = int((matched >= 0).sum())
            values.append(tp / (len(matched) + len(gt.boxes) - tp))  # TP + FP + FN
        per_image.append(np.mean(values))
    return float(np.mean(per_image)) if per_image else math.nan


def recall_by_size(preds: Sequence[Mapping], targets: Sequence[Mapping],
                   bins: Sequence[float] = SIZE_BINS, score_thresh: float = 0.5,
                   iou_thresh: float = 0.5) -> pd.DataFrame:
    """Recall of ground-truth boxes binned by side length sqrt(w*h) in pixels, bins [lo, hi).

    pycocotools' size ranges are absolute (side < 32 px small, 32-96 medium, > 96 large)
    and were set for COCO photos; after a 1024 px radiograph is resized to 256 px the same
    lesion is 4x smaller and may change bin. Pick ``bins`` for your image size and say so.
    """
    matches = match_images(preds, targets, iou_thresh, score_thresh)
    sizes = [np.sqrt(np.prod(t[0][:, 2:] - t[0][:, :2], axis=1)) for _, _, t in
             image_pairs(preds, targets)]
    df = pd.DataFrame({"size": np.concatenate(sizes + [np.zeros(0)]),
                       "detected": np.concatenate([m.detected for m in matches]
                                                  + [np.zeros(0, bool)])})
    df["bin"] = pd.cut(df["size"], list(bins), right=False)
    out = df.groupby("bin", observed=False)["detected"].agg(n_gt="size", detected="sum")
    out = out.reset_index()
    out["bin"] = out["bin"].astype(str)
    out["detected"] = out["detected"].astype(int)
    out["recall"] = [_ratio(d, n) for d, n in zip(out["detected"], out["n_gt"], strict=True)]
    return out


def image_level_report(preds: Sequence[Mapping], targets: Sequence[Mapping],
                       score_thresh: float = 0.5) -> dict:
    """Image-level "any lesion?" classification: image score = highest box score (0 if none)."""
    y_true, y_score = [], []
    for _, (_, ps, _), (gb, _, _) in image_pairs(preds, targets):
        y_true.append(int(len(gb) > 0))
        y_score.append(float(ps.max()) if len(ps) else 0.0)
    y_true, y_score = np.array(y_true), np.array(y_score)
    y_pred = (y_score >= score_thresh).astype(int)
    report = classification_report(y_true, y_pred, labels=[0, 1], output_dict=True,
                                   target_names=["no lesion", "lesion"], zero_division=np.nan)
    both = len(np.unique(y_true)) == 2  # ROC AUC needs sick and healthy images
    return {"report": report,
            "roc_auc": float(roc_auc_score(y_true, y_score)) if both else math.nan,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=[0, 1]),
            "y_true": y_true, "y_score": y_score, "score_thresh": score_thresh}


def bootstrap_ci(values_or_fn, groups, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Estimate and percentile bootstrap interval of a statistic, resampling whole groups.

    ``groups`` holds one group label per row (a study UID per slice, or one row per study).
    Each of ``n_boot`` draws picks as many groups as there are, uniformly with replacement,
    and takes all rows of each pick (a group drawn twice counts twice). The statistic is the
    mean of ``values_or_fn`` over the drawn rows when it is an array of per-row values, or
    ``values_or_fn(rows)`` when it is a function of an integer index array (with repeats)
    returning a float. Returns ``(estimate, low, high)``: the statistic on all rows, and the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the draws (2.5 % and 97.5 %
    by default). Draws whose statistic is NaN (say, a recall over a draw that holds no
    fractured study) are left out; when every draw is NaN, so are ``low`` and ``high``.
    """
    labels = np.asarray(groups)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"groups has shape {labels.shape}; expected one label per row")
    if callable(values_or_fn):
        stat = values_or_fn
    else:
        values = np.asarray(values_or_fn, dtype=np.float64)
        if values.shape != labels.shape:
            raise ValueError(f"values have shape {values.shape} but groups {labels.shape}")

        def stat(rows):
            return float(values[rows].mean())
    if not 0 < level < 1:
        raise ValueError(f"level={level}; expected a fraction in (0, 1)")
    codes, uniques = pd.factorize(labels)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    rows_of = [order[starts[g]:starts[g + 1]] for g in range(len(uniques))]
    rng = np.random.default_rng(seed)
    draws = np.array([float(stat(np.concatenate([rows_of[g] for g in
                                                 rng.integers(0, len(uniques), len(uniques))])))
                      for _ in range(int(n_boot))])
    draws = draws[~np.isnan(draws)]
    estimate = float(stat(np.arange(len(labels))))
    if len(draws) == 0:
        return estimate, math.nan, math.nan
    low, high = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
    return estimate, float(low), float(high)

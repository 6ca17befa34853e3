"""Score-ordered matching: which prediction found which ground-truth box, image by image.

Every count of true and false positives in the course rests on this one convention:

* predictions are visited in **descending score order** (a stable sort, so ties keep their
  input order, as pycocotools' mergesort does);
* each takes the best **still-unmatched** ground-truth box of its own label, if that IoU is
  ``>= iou_thresh`` (as pycocotools); ``strict=True`` asks for ``> iou_thresh`` instead, the
  rule of the RSNA 2018 pneumonia metric;
* each ground-truth box is matched at most once, so a second box on a found lesion is a
  false positive.

Inputs are lists (one entry per image) of dicts holding ``boxes`` [N, 4] as [x1, y1, x2, y2]
pixels, predictions also ``scores`` [N]; ``labels`` are optional (missing labels mean every
box is the lesion class 1). ``helpers.metrics``, ``helpers.calibration`` and ``helpers.qc``
build on these functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torchvision.ops

__all__ = ["BoxSet", "MatchResult", "box_set", "greedy_match", "image_pairs", "match_image",
           "match_images", "score_ordered_ious"]


class BoxSet(NamedTuple):
    """One image's boxes as arrays: boxes float64 [N, 4], scores [N] (ones for targets), labels."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def _np(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def box_set(d: Mapping, what: str, scored: bool) -> BoxSet:
    """Validate one image's dict (named ``what`` in errors) and return it as a BoxSet."""
    if "boxes" not in d:
        raise KeyError(f"{what} has no 'boxes' (keys: {sorted(d)}); expected [N, 4] boxes")
    boxes = _np(d["boxes"], np.float64)
    if boxes.size == 0:  # an empty list or tensor of any shape means "no boxes"
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}['boxes'] has shape {boxes.shape}, expected [N, 4]")
    n = len(boxes)
    if scored and "scores" not in d:
        raise KeyError(f"{what} has no 'scores'; predictions need one score per box")
    scores = _np(d["scores"], np.float64).reshape(-1) if scored else np.ones(n)
    labels = _np(d["labels"], np.int64).reshape(-1) if "labels" in d else np.ones(n, np.int64)
    if len(scores) != n or len(labels) != n:
        raise ValueError(f"{what}: {n} boxes but {len(scores)} scores and {len(labels)} labels")
    return BoxSet(boxes, scores, labels)


def image_pairs(preds: Sequence[Mapping],
                targets: Sequence[Mapping]) -> Iterator[tuple[int, BoxSet, BoxSet]]:
    """(index, predictions, targets) of every image, validated; one prediction dict per target."""
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions but {len(targets)} targets: "
                         "expected one prediction dict per target image")
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        yield i, box_set(p, f"predictions[{i}]", True), box_set(t, f"targets[{i}]", False)


def score_ordered_ious(pred: BoxSet, gt: BoxSet) -> tuple[np.ndarray, np.ndarray]:
    """Predictions' order by descending score, and their IoU rows (-1 across labels) in it."""
    order = np.argsort(-pred.scores, kind="stable")  # stable, as pycocotools' mergesort
    # float64: an IoU of exactly 0.6 must not become 0.6000000238 and pass "> 0.6"
    ious = torchvision.ops.box_iou(torch.from_numpy(pred.boxes[order]),
                                   torch.from_numpy(gt.boxes)).numpy()
    ious[pred.labels[order][:, None] != gt.labels[None, :]] = -1.0  # only their own class
    return order, ious


def greedy_match(ious: np.ndarray, thresh: float,
                 strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Match score-ordered IoU rows greedily: (matched box per row or -1, its IoU or 0)."""
    if not 0.0 < thresh <= 1.0:
        raise ValueError(f"IoU threshold {thresh} is outside (0, 1]")
    n_pred, n_gt = ious.shape
    matched, best = np.full(n_pred, -1, dtype=np.int64), np.zeros(n_pred)
    taken = np.zeros(n_gt, dtype=bool)
    best_any = ious.max(axis=1) if n_gt else np.full(n_pred, -1.0)
    hits = best_any > thresh if strict else best_any >= thresh
    for i in np.flatnonzero(hits):  # a row that misses every box can never match
        row = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(row))  # the best still-unmatched box; ties go to the first
        if row[j] > thresh or (not strict and row[j] >= thresh):
            matched[i], best[i], taken[j] = j, row[j], True
    return matched, best


@dataclass(frozen=True)
class MatchResult:
    """One image's matching, predictions in descending score order."""

    order: np.ndarray  # index of each kept prediction in the original prediction dict
    scores: np.ndarray  # their scores, descending
    is_tp: np.ndarray  # True when the prediction matched a ground-truth box
    matched_gt: np.ndarray  # index of that ground-truth box, -1 for a false positive
    iou: np.ndarray  # IoU with the matched box, 0 for a false positive
    detected: np.ndarray  # per ground-truth box: was it matched?

    @property
    def tp(self) -> int:
        """True positives: predictions that found a lesion."""
        return int(self.is_tp.sum())

    @property
    def fp(self) -> int:
        """False positives: predictions that found none."""
        return int((~self.is_tp).sum())

    @property
    def fn(self) -> int:
        """False negatives: lesions nobody found."""
        return int((~self.detected).sum())


def match_image(pred: BoxSet, gt: BoxSet, iou_thresh: float = 0.5,
                score_thresh: float = 0.0) -> MatchResult:
    """Match one image's predictions with score >= score_thresh to its ground truth."""
    keep = np.flatnonzero(pred.scores >= score_thresh)
    kept = BoxSet(pred.boxes[keep], pred.scores[keep], pred.labels[keep])
    order, ious = score_ordered_ious(kept, gt)
    matched, iou = greedy_match(ious, iou_thresh)
    detected = np.zeros(len(gt.boxes), dtype=bool)
    detected[matched[matched >= 0]] = True
    return MatchResult(keep[order], kept.scores[order], matched >= 0, matched, iou, detected)


def match_images(preds: Sequence[Mapping], targets: Sequence[Mapping], iou_thresh: float = 0.5,
                 score_thresh: float = 0.0) -> list[MatchResult]:
    """``match_image`` of every image of a prediction list and its target list."""
    return [match_image(p, t, iou_thresh, score_thresh) for _, p, t in image_pairs(preds, targets)]

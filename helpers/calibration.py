"""Calibration: does a score of 0.8 mean "right 8 times out of 10"?

A detector's score is only useful to a clinician if it can be read as a probability. Take
every predicted box, call it correct when it matches a lesion (IoU >= 0.5, in score order,
each lesion at most once: ``helpers.matching``), and group the boxes by
score. In a well-calibrated detector the boxes scored about 0.8 are correct about 80 % of
the time. The **reliability diagram** plots, per score bin, the observed accuracy against
the mean score; the diagonal is perfect calibration. The **expected calibration error**
(ECE) summarises the gaps: the bin-count-weighted mean of |accuracy - mean score|, so 0 is
perfect and an always-confident, always-wrong detector scores close to its confidence.

Bins: 10 equal-width bins on [0, 1], exactly scikit-learn's
``calibration_curve(strategy="uniform")``: the first bin is [0, 0.1], the others are
right-closed, (0.1, 0.2], ..., (0.9, 1.0]. Empty bins are kept with count 0 and NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve

from helpers.matching import match_images

__all__ = ["detection_confidences", "expected_calibration_error", "reliability_bins"]


def detection_confidences(preds: Sequence[Mapping], targets: Sequence[Mapping],
                          iou_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Every prediction's score and whether it matched a ground-truth box (is_tp)."""
    matches = match_images(preds, targets, iou_thresh, score_thresh=-np.inf)
    scores = np.concatenate([m.scores for m in matches] + [np.zeros(0)])
    is_tp = np.concatenate([m.is_tp for m in matches] + [np.zeros(0, dtype=bool)])
    return scores, is_tp


def _check(scores, correct, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct).reshape(-1)
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} correct flags: "
                         "expected one flag per score")
    if len(scores) and (scores.min() < 0 or scores.max() > 1):
        raise ValueError(f"scores range over [{scores.min()}, {scores.max()}], expected [0, 1]")
    if not np.isin(correct, [0, 1]).all():
        raise ValueError("correct must hold booleans or 0/1 values")
    if int(n_bins) < 1:
        raise ValueError(f"n_bins={n_bins}, expected a positive number of bins")
    return scores, correct.astype(int)


def reliability_bins(scores, correct, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: edges, count, mean score (confidence), accuracy and their gap."""
    scores, correct = _check(scores, correct, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # the same bin assignment as calibration_curve, which returns non-empty bins only
    counts = np.bincount(np.searchsorted(edges[1:-1], scores), minlength=n_bins)
    accuracy, confidence = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    if len(scores):
        acc, conf = calibration_curve(correct, scores, n_bins=n_bins, strategy="uniform")
        accuracy[counts > 0], confidence[counts > 0] = acc, conf
    return pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": counts,
                         "confidence": confidence, "accuracy": accuracy,
                         "gap": np.abs(accuracy - confidence)})


def expected_calibration_error(scores, correct, n_bins: int = 10) -> float:
    """ECE: bin-count-weighted mean |accuracy - confidence| over equal-width bins (NaN if empty)."""
    bins = reliability_bins(scores, correct, n_bins)
    total = bins["count"].sum()
    if total == 0:
        return float("nan")
    filled = bins[bins["count"] > 0]
    return float((filled["count"] * filled["gap"]).sum() / total)

"""helpers.calibration: TP/FP scores, reliability bins (aligned with scikit-learn), ECE."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.calibration import calibration_curve

from helpers.calibration import (
    detection_confidences,
    expected_calibration_error,
    reliability_bins,
)


def test_perfectly_calibrated_scores_have_zero_ece():
    centres = np.arange(10) * 0.1 + 0.05
    scores = np.repeat(centres, 20)
    correct = np.concatenate([np.arange(20) < round(c * 20) for c in centres])
    ece = expected_calibration_error(scores, correct)
    assert ece == pytest.approx(0.0, abs=1e-12), f"expected 0, got {ece}"


def test_confident_and_always_wrong_scores_ece_equals_confidence():
    assert expected_calibration_error(np.full(50, 0.95), np.zeros(50)) == pytest.approx(0.95)
    assert expected_calibration_error(np.full(50, 0.3), np.ones(50)) == pytest.approx(0.7)


def test_two_bin_hand_worked_example():
    scores, correct = [0.2, 0.4, 0.6, 0.9], [0, 1, 1, 1]
    bins = reliability_bins(scores, correct, n_bins=2)
    assert bins["count"].tolist() == [2, 2]
    assert bins["confidence"].tolist() == pytest.approx([0.3, 0.75])
    assert bins["accuracy"].tolist() == pytest.approx([0.5, 1.0])
    # (2 * |0.5 - 0.3| + 2 * |1.0 - 0.75|) / 4
    assert expected_calibration_error(scores, correct, n_bins=2) == pytest.approx(0.225)


def test_bin_edges_follow_calibration_curve():
    bins = reliability_bins([0.0, 0.5, 1.0], [1, 0, 1], n_bins=2)
    assert bins["count"].tolist() == [2, 1]  # 0.5 sits in the first, right-closed bin
    assert bins["bin_lower"].tolist() == [0.0, 0.5] and bins["bin_upper"].tolist() == [0.5, 1.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reliability_bins_agree_with_sklearn_and_keep_empty_bins(seed):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.uniform(0.0, 0.3, 40), rng.uniform(0.6, 1.0, 60), [0.7, 0.8]])
    correct = rng.uniform(size=len(scores)) < scores
    bins = reliability_bins(scores, correct)
    prob_true, prob_pred = calibration_curve(correct, scores, n_bins=10, strategy="uniform")
    filled = bins[bins["count"] > 0]
    assert filled["accuracy"].to_numpy() == pytest.approx(prob_true)
    assert filled["confidence"].to_numpy() == pytest.approx(prob_pred)
    assert len(bins) == 10 and bins["count"].sum() == len(scores)
    empty = bins[bins["count"] == 0]
    assert len(empty) >= 2 and empty["accuracy"].isna().all()
    manual = sum(len(g) * abs(g["ok"].mean() - g["s"].mean()) for g in _groups(scores, correct))
    assert expected_calibration_error(scores, correct) == pytest.approx(manual / len(scores))


def _groups(scores, correct):
    df = pd.DataFrame({"s": scores, "ok": correct.astype(float)})
    ids = np.clip(np.ceil(df["s"] * 10) - 1, 0, 9)  # (lo, hi] bins, 0 in the first
    return [g for _, g in df.groupby(ids)]


def test_bad_input_and_no_predictions():
    with pytest.raises(ValueError, match="outside|range"):
        reliability_bins([1.2], [1])
    with pytest.raises(ValueError, match="2 scores but 1"):
        expected_calibration_error([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="0/1"):
        reliability_bins([0.1], [2])
    assert math.isnan(expected_calibration_error([], []))
    assert reliability_bins([], [])["count"].sum() == 0


def test_detection_confidences_hand_case():
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9]]),
              "scores": torch.tensor([0.6, 0.9]), "labels": torch.tensor([1, 1])},
             {"boxes": torch.tensor([[5.0, 5, 9, 9]]), "scores": torch.tensor([0.2]),
              "labels": torch.tensor([1])}]
    scores, is_tp = detection_confidences(preds, targets)
    # 0.9 (IoU 0.9) takes the lesion first, the exact box at 0.6 is then a duplicate
    assert scores.tolist() == pytest.approx([0.9, 0.6, 0.2])
    assert is_tp.tolist() == [True, False, False]

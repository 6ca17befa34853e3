"""helpers.qc: hardest false positives and missed lesions on a hand-built case."""

from __future__ import annotations

import pytest
import torch

from helpers.qc import hardest_false_positives, missed_lesions


def _case():
    targets = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 90, 90], [200, 200, 205, 205]]),
         "labels": torch.tensor([1, 1, 1]), "image_id": torch.tensor(7)},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    preds = [
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 8], [50, 50, 90, 90]]),
         "scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.tensor([1, 1, 1])},
        {"boxes": torch.tensor([[100.0, 100, 120, 120]]), "scores": torch.tensor([0.95]),
         "labels": torch.tensor([1])},
    ]
    return preds, targets


def test_hardest_false_positives():
    preds, targets = _case()
    fps = hardest_false_positives(preds, targets, k=5)
    assert [(f["image"], f["score"]) for f in fps] == [(1, pytest.approx(0.95)),
                                                       (0, pytest.approx(0.8))]
    assert fps[0]["best_iou"] == 0.0 and fps[0]["image_id"] == 1  # no lesion on that image
    assert fps[1]["best_iou"] == pytest.approx(0.8)  # a duplicate on a found lesion
    assert fps[1]["box"] == [0.0, 0.0, 10.0, 8.0] and fps[1]["image_id"] == 7
    assert len(hardest_false_positives(preds, targets, k=1)) == 1


def test_missed_lesions_largest_first():
    preds, targets = _case()
    missed = missed_lesions(preds, targets, score_thresh=0.5)
    assert [m["box"] for m in missed] == [[50.0, 50.0, 90.0, 90.0], [200.0, 200.0, 205.0, 205.0]]
    big, small = missed
    assert big["area"] == 1600.0 and big["best_score"] == pytest.approx(0.3)
    assert big["best_iou"] == pytest.approx(1.0)  # seen, but scored under the threshold
    assert small["best_score"] is None and small["best_iou"] == 0.0
    assert missed_lesions(preds, targets, score_thresh=0.2) == [small]
    assert len(missed_lesions(preds, targets, k=1)) == 1

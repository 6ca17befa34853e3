"""The pneumonia notebook's hidden checks: each passes the notebook's own solution and fails a
wrong answer and one that calls the reference it was asked to write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.ops
from pytorch_grad_cam import EigenCAM, GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from sklearn.calibration import calibration_curve
from torch.utils.data import Dataset
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

import helpers.calibration
import helpers.metrics
from autograder import pneumonia_checks as checks
from autograder.common import calibration_cases
from autograder.reference_datasets import to_sample
from course.config import load
from helpers.data import collate, read_dicom_image
from helpers.models import replace_head
from tests.solutions import solution_namespace

NOTEBOOK = load().source_notebook(load().assignment("pneumonia"))
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sol() -> dict:
    """The notebook's solution cells, executed with the names the notebook imports."""
    return solution_namespace(NOTEBOOK, {
        "np": np, "pd": pd, "torch": torch, "Path": Path, "Dataset": Dataset,
        "read_dicom_image": read_dicom_image, "FastRCNNPredictor": FastRCNNPredictor,
        "GradCAM": GradCAM, "FasterRCNNBoxScoreTarget": FasterRCNNBoxScoreTarget})


def test_dataset(sol):
    checks.check_dataset(sol["PneumoniaBoxes"])

    class Cheat(sol["PneumoniaBoxes"]):
        def __getitem__(self, idx):
            pid = self.patient_ids[idx]
            rows = self.by_patient[pid]
            xyxy = rows[["x", "y", "width", "height"]].to_numpy(np.float32)
            xyxy[:, 2:] += xyxy[:, :2]
            return to_sample(read_dicom_image(self.image_dir / f"{pid}.dcm"), xyxy, idx,
                             self.transform)

    with pytest.raises(AssertionError, match="to_sample"):
        checks.check_dataset(Cheat)

    class KeepsXYWH(sol["PneumoniaBoxes"]):
        def __getitem__(self, idx):
            image, target = super().__getitem__(idx)
            target["boxes"][:, 2:] -= target["boxes"][:, :2]  # width/height, not corners
            return image, target

    with pytest.raises(AssertionError, match="boxes"):
        checks.check_dataset(KeepsXYWH)

    class FlatWhenEmpty(sol["PneumoniaBoxes"]):  # a negative's boxes of shape (0,), not (0, 4)
        def __getitem__(self, idx):
            image, target = super().__getitem__(idx)
            if not len(target["boxes"]):
                target["boxes"] = target["boxes"].reshape(-1)
            return image, target

    with pytest.raises(AssertionError, match=r"target\['boxes'\](.|\n)*without boxes"):
        checks.check_dataset(FlatWhenEmpty)

    class DropsNegatives(sol["PneumoniaBoxes"]):  # ignores positives_only=False
        def __init__(self, *args, positives_only=True, **kwargs):
            super().__init__(*args, **kwargs)

    with pytest.raises(AssertionError, match="number of samples(.|\n)*every patient"):
        checks.check_dataset(DropsNegatives)


def test_collate(sol):
    checks.check_collate(sol["detection_collate"])
    with pytest.raises(AssertionError, match="collate"):
        checks.check_collate(lambda batch: collate(batch))
    with pytest.raises(AssertionError):
        checks.check_collate(lambda batch: ([b[0].clone() for b in batch], [b[1] for b in batch]))


def test_head(sol):
    checks.check_head(sol["replace_box_predictor"])
    with pytest.raises(AssertionError, match="replace_head"):
        checks.check_head(replace_head)

    def always_two(model, num_classes):
        return sol["replace_box_predictor"](model, 2)

    with pytest.raises(AssertionError, match="classes"):
        checks.check_head(always_two)


def test_optimizer(sol):
    checks.check_optimizer(sol["make_optimizer"])

    def all_params(model, lr, momentum, weight_decay, step_size, gamma):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)

    with pytest.raises(AssertionError, match="parameters"):
        checks.check_optimizer(all_params)

    def adam(model, lr, momentum, weight_decay, step_size, gamma):
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)

    with pytest.raises(AssertionError, match="SGD"):
        checks.check_optimizer(adam)


def test_iou(sol):
    checks.check_iou(sol["box_iou_matrix"])
    for cheat in (torchvision.ops.box_iou, helpers.metrics.box_iou,
                  lambda a, b: torchvision.ops.box_iou(a, b)):
        with pytest.raises(AssertionError, match="calls"):
            checks.check_iou(cheat)

    def no_minus(a, b):  # union = sum of the areas, intersection counted twice
        inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:])
                 - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(2)
        area = lambda x: (x[:, 2:] - x[:, :2]).prod(1)  # noqa: E731
        return inter / (area(a)[:, None] + area(b)[None, :])

    with pytest.raises(AssertionError, match="IoU"):
        checks.check_iou(no_minus)

    def with_box_area(a, b):  # box_area is a box utility, not one of box_iou's relatives
        inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:])
                 - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(min=0).prod(2)
        union = torchvision.ops.box_area(a)[:, None] + torchvision.ops.box_area(b)[None, :]
        return inter / (union - inter)

    checks.check_iou(with_box_area)
    with pytest.raises(AssertionError, match="_box_inter_union"):  # the private one too
        checks.check_iou(lambda a, b: (lambda i, u: i / u)(
            *torchvision.ops.boxes._box_inter_union(a, b)))


def test_precision_recall(sol):
    checks.check_precision_recall(sol["precision_recall_at"])

    def cheat(preds, targets, iou_fn, score_thresh=0.5, iou_thresh=0.5):
        return helpers.metrics.precision_recall(preds, targets, score_thresh, iou_thresh)

    with pytest.raises(AssertionError, match="precision_recall"):
        checks.check_precision_recall(cheat)

    def any_overlap(preds, targets, iou_fn, score_thresh=0.5, iou_thresh=0.5):
        # no one-to-one matching: every prediction over the threshold counts, duplicates too
        tp = fp = fn = 0
        for p, t in zip(preds, targets, strict=True):
            keep = p["scores"] >= score_thresh
            ious = iou_fn(p["boxes"][keep], t["boxes"])
            hit = (ious >= iou_thresh).any(1) if ious.numel() else torch.zeros(int(keep.sum()),
                                                                               dtype=bool)
            tp, fp = tp + int(hit.sum()), fp + int((~hit).sum())
            fn += int((~(ious >= iou_thresh).any(0)).sum()) if ious.numel() else len(t["boxes"])
        return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1)}

    with pytest.raises(AssertionError, match="tp, fp, fn"):
        checks.check_precision_recall(any_overlap)


def test_calibration(sol):
    checks.check_calibration(sol["reliability_table"], sol["ece"])

    def sk_bins(scores, correct, n_bins=10):
        acc, conf = calibration_curve(correct, scores, n_bins=n_bins)
        return helpers.calibration.reliability_bins(scores, correct, n_bins)

    with pytest.raises(AssertionError, match="calibration_curve"):
        checks.check_calibration(sk_bins, sol["ece"])

    def unweighted(scores, correct, n_bins=10):
        table = sol["reliability_table"](scores, correct, n_bins)
        return float((table["accuracy"] - table["confidence"]).abs().mean())

    with pytest.raises(AssertionError, match="ECE"):
        checks.check_calibration(sol["reliability_table"], unweighted)


def binned_table(scores, correct, n_bins, right):
    """A reliability table with np.digitize bins, right-closed (the stated convention) or
    left-closed (0.1 in the second of 10 bins); the first and last bins keep 0 and 1."""
    s, c = np.asarray(scores, float).ravel(), np.asarray(correct, float).ravel()
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(s, edges, right=right) - 1, 0, n_bins - 1)
    rows = [{"count": int((which == k).sum()),
             "confidence": s[which == k].mean() if (which == k).any() else np.nan,
             "accuracy": c[which == k].mean() if (which == k).any() else np.nan}
            for k in range(n_bins)]
    return pd.DataFrame(rows)


def binned_ece(scores, correct, n_bins, right):
    table = binned_table(scores, correct, n_bins, right)
    full = table[table["count"] > 0]
    gaps = (full["accuracy"] - full["confidence"]).abs()
    return float((full["count"] * gaps).sum() / full["count"].sum())


def test_calibration_bin_convention(sol):
    """Right-closed bins, as the notebook states (and calibration_curve does), in any form;
    a left-closed answer fails on the scores that sit exactly on the bin edges."""
    right_table = lambda s, c, n_bins=10: binned_table(s, c, n_bins, right=True)  # noqa: E731
    right_ece = lambda s, c, n_bins=10: binned_ece(s, c, n_bins, right=True)  # noqa: E731
    checks.check_calibration(right_table, right_ece)
    left_table = lambda s, c, n_bins=10: binned_table(s, c, n_bins, right=False)  # noqa: E731
    left_ece = lambda s, c, n_bins=10: binned_ece(s, c, n_bins, right=False)  # noqa: E731
    with pytest.raises(AssertionError, match="column count"):
        checks.check_calibration(left_table, sol["ece"])
    with pytest.raises(AssertionError, match="ECE"):
        checks.check_calibration(sol["reliability_table"], left_ece)
    # the edge scores alone tell the two conventions apart, with 10 and with 4 bins
    _, edges, correct = calibration_cases()[1]
    for n_bins in (10, 4):
        assert not np.isclose(binned_ece(edges, correct, n_bins, right=False),
                              helpers.calibration.expected_calibration_error(edges, correct,
                                                                             n_bins))


def test_detection_scores(sol):
    checks.check_detection_scores(sol["detection_scores"])

    def cheat(preds, targets, iou_fn, iou_thresh=0.5):
        return helpers.calibration.detection_confidences(preds, targets, iou_thresh)

    with pytest.raises(AssertionError, match="detection_confidences"):
        checks.check_detection_scores(cheat)

    def any_overlap(preds, targets, iou_fn, iou_thresh=0.5):  # duplicates count as TPs too
        scores, flags = [], []
        for p, t in zip(preds, targets, strict=True):
            ious = iou_fn(p["boxes"], t["boxes"])
            hit = (ious >= iou_thresh).any(1) if ious.numel() else torch.zeros(len(p["boxes"]),
                                                                               dtype=bool)
            scores += p["scores"].tolist()
            flags += hit.tolist()
        return np.array(scores), np.array(flags)

    with pytest.raises(AssertionError, match="is_tp"):
        checks.check_detection_scores(any_overlap)


def test_gradcam(sol):
    checks.check_gradcam(sol["gradcam_for_box"])

    def eigencam(model, image, box, label=1):  # ignores the target: one map for every box
        target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box])
        with EigenCAM(model=model, target_layers=[model.backbone.body.layer4]) as cam:
            return cam(input_tensor=image[None], targets=[target])[0]

    with pytest.raises(AssertionError, match="Grad-CAM map"):
        checks.check_gradcam(eigencam)

    def wrong_layer(model, image, box, label=1):
        target = FasterRCNNBoxScoreTarget(labels=[label], bounding_boxes=[box])
        with GradCAM(model=model, target_layers=[model.backbone.body.layer3]) as cam:
            return cam(input_tensor=image[None], targets=[target])[0]

    with pytest.raises(AssertionError, match="Grad-CAM map"):
        checks.check_gradcam(wrong_layer)

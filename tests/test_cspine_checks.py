"""The C-spine notebook's hidden checks: each passes the notebook's own solution and fails a
wrong answer and one that calls the reference it was asked to write."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.ops
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch.utils.data import Dataset
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

import helpers.calibration
import helpers.metrics
from autograder import cspine_checks as checks
from autograder.common import calibration_cases, compare_sample
from autograder.reference_datasets import CSpineH5Dataset, to_sample
from course.config import load
from helpers import progress
from helpers.data.cspine_pack import pack_cspine
from helpers.data.hdf5 import open_cspine, read_column
from helpers.models import replace_head
from helpers.transforms import eval_transforms
from tests.competition_layout import competition_folder
from tests.solutions import solution_namespace

NOTEBOOK = load().source_notebook(load().assignment("cspine"))
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sol() -> dict:
    """The notebook's solution cells, executed with the names the notebook imports."""
    return solution_namespace(NOTEBOOK, {
        "np": np, "torch": torch, "Path": Path, "os": os, "h5py": h5py, "Dataset": Dataset,
        "open_cspine": open_cspine, "FastRCNNPredictor": FastRCNNPredictor,
        "GradCAM": GradCAM, "FasterRCNNBoxScoreTarget": FasterRCNNBoxScoreTarget})


def test_dataset(sol):
    base = sol["CSpineSlices"]
    checks.check_dataset(base)

    class Cheat(base):
        def __getitem__(self, idx):
            i = int(self.indices[idx])
            rows = self.bboxes[i][(self.bboxes[i] != -1).any(axis=1)]
            return to_sample(np.asarray(self._images()[i], np.float32),
                             np.hstack([rows[:, :2], rows[:, :2] + rows[:, 2:]]), i,
                             self.transform)

    with pytest.raises(AssertionError, match="to_sample"):
        checks.check_dataset(Cheat)

    class CornerRepair(base):  # the capstone notebook's reading: corners, "fixed" by min/max
        def __getitem__(self, idx):
            return _sketch(self, idx, decode="corners")

    with pytest.raises(AssertionError, match="boxes"):
        checks.check_dataset(CornerRepair)

    class ZeroPaddingRule(base):  # has_box from non-zero rows: the -1 rows stay as boxes
        def __getitem__(self, idx):
            return _sketch(self, idx, padding=0.0, min_side=-np.inf)

    with pytest.raises(AssertionError, match="boxes given to the transform"):
        checks.check_dataset(ZeroPaddingRule)

    class KeepsFillRows(base):  # decodes every row, -1 rows included, then "repairs" them
        def __getitem__(self, idx):
            return _sketch(self, idx, keep_fill=True, decode="xywh+repair")

    with pytest.raises(AssertionError, match="boxes given to the transform"):
        checks.check_dataset(KeepsFillRows)

    class KeepsSubPixel(base):  # decodes right but keeps the 0.6 px box
        def __getitem__(self, idx):
            return _sketch(self, idx, min_side=0.0)

    with pytest.raises(AssertionError, match="boxes"):
        checks.check_dataset(KeepsSubPixel)

    class Restretches(base):  # min-max scales the already scaled slice again
        def __getitem__(self, idx):
            return _sketch(self, idx, restretch=True)

    with pytest.raises(AssertionError, match="image"):
        checks.check_dataset(Restretches)

    class Sketch(base):  # the sketch itself, with every switch right, is a right answer
        def __getitem__(self, idx):
            return _sketch(self, idx)

    checks.check_dataset(Sketch)

    class ImageIdVector(base):  # a 1-element image_id is as good as a 0-d one
        def __getitem__(self, idx):
            return _sketch(self, idx, id_shape=(1,))

    checks.check_dataset(ImageIdVector)


def _sketch(ds, idx, decode="xywh", padding=-1.0, keep_fill=False, min_side=1.0,
            restretch=False, id_shape=()):
    """A compact __getitem__ with switches for the mistakes the check must catch."""
    i = int(ds.indices[idx])
    image = np.asarray(ds._images()[i], np.float32)
    if restretch:
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo) if hi > lo else 0 * image
    rows = ds.bboxes[i]
    if not keep_fill:
        rows = rows[np.any(rows != padding, axis=1)]
    if decode.startswith("xywh"):
        rows = np.hstack([rows[:, :2], rows[:, :2] + rows[:, 2:]])
    if decode != "xywh":
        rows = np.hstack([np.minimum(rows[:, :2], rows[:, 2:]),
                          np.maximum(rows[:, :2], rows[:, 2:])])
    rows = rows[((rows[:, 2:] - rows[:, :2]) >= min_side).all(axis=1)]
    out = ds.transform(image=np.repeat(image[:, :, None], 3, 2), bboxes=rows,
                       labels=np.ones(len(rows)))
    b = torch.as_tensor(np.asarray(out["bboxes"], np.float32)).reshape(-1, 4)
    return out["image"].float(), {"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64),
                                  "image_id": torch.tensor(i).reshape(id_shape),
                                  "area": (b[:, 2:] - b[:, :2]).prod(1),
                                  "iscrowd": torch.zeros(len(b), dtype=torch.int64)}


def test_solution_and_visible_check_read_a_packed_file(sol, tmp_path):
    """A file packed from a competition layout the way the public notebook packs it: the
    notebook's Dataset solution reads the competition's boxes back, agrees with the
    reference, and the graded visible check runs on it."""
    out = pack_cspine(competition_folder(tmp_path / "rsna2022"), tmp_path / "subset.h5",
                      progress=False)
    truth = pd.read_csv(tmp_path / "rsna2022" / "train_bounding_boxes.csv")
    uids, numbers = read_column(out, "StudyInstanceUID"), read_column(out, "SliceNumber")
    n = len(uids)
    ds = sol["CSpineSlices"](out, np.arange(n), eval_transforms(256))
    ref = CSpineH5Dataset(out, transform=eval_transforms(256))
    for i in range(n):
        image, target = ds[i]
        compare_sample(f"packed row {i}", image, target, *ref[i])
        rows = truth[(truth["StudyInstanceUID"] == uids[i])
                     & (truth["slice_number"] == int(numbers[i]))]
        xywh = rows[["x", "y", "width", "height"]].to_numpy(np.float32) * 0.5
        want = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]).reshape(-1, 4)
        np.testing.assert_allclose(target["boxes"].numpy(), want, rtol=1e-6)
    cell = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "test_dataset")
    visible = cell.split("### BEGIN HIDDEN TESTS")[0]
    labels = read_column(out, "labels")
    exec(visible, {**sol, "h5_path": out, "has_box": labels == 1, "slice_px": 256,  # noqa: S102
                   "eval_transforms": eval_transforms, "progress": progress})


def test_head(sol):
    checks.check_head(sol["adapt_detector"])

    def with_replace_head(model, num_classes, image_size):
        model = replace_head(model, num_classes)
        model.transform.min_size, model.transform.max_size = (image_size,), image_size
        return model

    with pytest.raises(AssertionError, match="replace_head"):
        checks.check_head(with_replace_head)

    def head_only(model, num_classes, image_size):  # leaves the 800 px resize in place
        feats = model.roi_heads.box_predictor.cls_score.in_features
        model.roi_heads.box_predictor = FastRCNNPredictor(feats, num_classes)
        return model

    with pytest.raises(AssertionError, match="min_size"):
        checks.check_head(head_only)


def test_optimizer(sol):
    checks.check_optimizer(sol["make_adamw"])

    def adam(model, lr=1e-4, weight_decay=1e-4, step_size=3, gamma=0.1):
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                               weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)

    with pytest.raises(AssertionError, match="AdamW"):
        checks.check_optimizer(adam)

    def all_params(model, lr=1e-4, weight_decay=1e-4, step_size=3, gamma=0.1):
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size, gamma)

    with pytest.raises(AssertionError, match="parameters"):
        checks.check_optimizer(all_params)


def test_iou(sol):
    checks.check_iou(sol["box_iou_matrix"])
    with pytest.raises(AssertionError, match="calls"):
        checks.check_iou(torchvision.ops.box_iou)


def test_match(sol):
    checks.check_match(sol["match_image"])

    def cheat(pred, target, iou_fn, iou_thresh=0.5):
        m = helpers.metrics.match_detections(pred, target, iou_thresh, score_thresh=-1)
        return {"scores": m.scores, "is_tp": m.is_tp, "n_gt": len(target["boxes"])}

    with pytest.raises(AssertionError, match="match_detections"):
        checks.check_match(cheat)

    def input_order(pred, target, iou_fn, iou_thresh=0.5):  # matches without sorting first
        ious = iou_fn(pred["boxes"], target["boxes"])
        free = torch.ones(len(target["boxes"]), dtype=torch.bool)
        flags = []
        for row in ious:
            row = torch.where(free, row, torch.full_like(row, -1.0))
            hit = bool(len(row)) and float(row.max()) >= iou_thresh
            if hit:
                free[int(row.argmax())] = False
            flags.append(hit)
        order = torch.argsort(pred["scores"], descending=True, stable=True)
        return {"scores": pred["scores"][order].numpy(), "is_tp": np.array(flags)[order],
                "n_gt": len(target["boxes"])}

    with pytest.raises(AssertionError, match="is_tp"):
        checks.check_match(input_order)


def test_precision_recall(sol):
    checks.check_precision_recall(sol["precision_recall"])

    def strict_threshold(matches, score_thresh=0.5):  # ">" instead of ">=", and 0/0 = 0
        tp = fp = fn = 0
        for m in matches:
            kept = np.asarray(m["scores"]) > score_thresh
            hits = int(np.asarray(m["is_tp"])[kept].sum())
            tp, fp, fn = tp + hits, fp + int(kept.sum()) - hits, fn + m["n_gt"] - hits
        return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / max(tp + fp, 1),
                "recall": tp / max(tp + fn, 1)}

    with pytest.raises(AssertionError):
        checks.check_precision_recall(strict_threshold)


def test_fine_tuning(sol):
    checks.check_fine_tuning(sol["setup_fine_tuning"])

    def freeze_only_body(model, lr, weight_decay=1e-4, factor=0.5, patience=1):
        for p in model.backbone.body.parameters():  # the FPN stays trainable
            p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=factor,
                                                               patience=patience)

    with pytest.raises(AssertionError, match="backbone"):
        checks.check_fine_tuning(freeze_only_body)

    def step_schedule(model, lr, weight_decay=1e-4, factor=0.5, patience=1):
        opt, _ = sol["setup_fine_tuning"](model, lr, weight_decay, factor, patience)
        return opt, torch.optim.lr_scheduler.StepLR(opt, 1, factor)

    with pytest.raises(AssertionError, match="ReduceLROnPlateau"):
        checks.check_fine_tuning(step_schedule)


def test_ece(sol):
    checks.check_ece(sol["expected_calibration_error"])
    with pytest.raises(AssertionError, match="expected_calibration_error"):
        checks.check_ece(helpers.calibration.expected_calibration_error)

    def left_closed(scores, correct, n_bins=10):  # np.digitize bins: 0.1 lands in bin 2
        s, c = np.asarray(scores, float), np.asarray(correct, float)
        if not len(s):
            return float("nan")
        which = np.clip(np.digitize(s, np.linspace(0, 1, n_bins + 1)) - 1, 0, n_bins - 1)
        return float(sum((which == k).sum() * abs(c[which == k].mean() - s[which == k].mean())
                         for k in range(n_bins) if (which == k).any()) / len(s))

    with pytest.raises(AssertionError, match="ECE"):
        checks.check_ece(left_closed)

    def right_closed(scores, correct, n_bins=10):  # the stated convention, another form
        s, c = np.asarray(scores, float), np.asarray(correct, float)
        if not len(s):
            return float("nan")
        edges = np.linspace(0, 1, n_bins + 1)
        which = np.clip(np.digitize(s, edges, right=True) - 1, 0, n_bins - 1)
        return float(sum((which == k).sum() * abs(c[which == k].mean() - s[which == k].mean())
                         for k in range(n_bins) if (which == k).any()) / len(s))

    checks.check_ece(right_closed)
    # the same edge inputs as the pneumonia check; alone, they tell the conventions apart
    _, edges, correct = calibration_cases()[1]
    for n_bins in (10, 4):
        assert not np.isclose(left_closed(edges, correct, n_bins),
                              helpers.calibration.expected_calibration_error(edges, correct,
                                                                             n_bins))


def test_gradcam(sol):
    checks.check_gradcam(sol["gradcam_for_box"])


def _gradcam_without_input_grad(model, image, box, label=1):
    """The solution without ``requires_grad_`` on the input: pytorch-grad-cam 1.5.x's GradCAM
    does not set it itself (``compute_input_gradient`` defaults to False)."""
    where = next(model.parameters()).device
    box_target = FasterRCNNBoxScoreTarget(labels=[int(label)],
                                          bounding_boxes=[torch.as_tensor(box).reshape(4)])
    model = model.eval()
    with GradCAM(model=model, target_layers=[model.backbone.body.layer4]) as cam:
        maps = cam(input_tensor=image[None].to(where), targets=[box_target])
    model.zero_grad(set_to_none=True)
    return maps[0]


def test_gradcam_without_input_grad_fails_only_on_the_frozen_backbone():
    from autograder import common

    common.check_gradcam(_gradcam_without_input_grad)  # the pneumonia check: unchanged
    with pytest.raises(AssertionError, match="backbone is frozen"):
        checks.check_gradcam(_gradcam_without_input_grad)

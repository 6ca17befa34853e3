"""Hidden checks of the pneumonia notebook (grading only: never shipped to students).

Each check runs one exercise's function on fresh inputs (not the notebook's visible ones),
compares the result with a reference computed outside the student's call, and fails when
the student's function calls the reference it was asked to write (``tripwire.run_without``).
The IoU and Grad-CAM checks, which the C-spine notebook sets too, live in ``common``.
A failed check raises ``AssertionError`` naming what was fed in, expected and got.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn.calibration
import torch
import torchvision.ops
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

import helpers.calibration
import helpers.data.datasets
import helpers.data.dicom
import helpers.metrics
import helpers.models
from autograder import reference_datasets
from autograder.common import (
    MATCH_REFS,
    calibration_cases,
    check_gradcam,
    check_iou,
    compare_pr,
    compare_sample,
    fail,
    flip_transform,
    random_scene,
)
from autograder.isolation import recorded
from autograder.tripwire import run_without
from helpers.data.synthetic import synth_pneumonia
from helpers.transforms import eval_transforms

__all__ = ["check_calibration", "check_collate", "check_dataset", "check_detection_scores",
           "check_gradcam", "check_head", "check_iou", "check_optimizer", "check_precision_recall"]

CALIBRATION_REFS = {
    "helpers.calibration.reliability_bins": helpers.calibration.reliability_bins,
    "helpers.calibration.expected_calibration_error":
        helpers.calibration.expected_calibration_error,
    "sklearn.calibration.calibration_curve": sklearn.calibration.calibration_curve,
}
DATASET_REFS = {
    "autograder.reference_datasets": reference_datasets,
    "helpers.data.read_labels": helpers.data.dicom.read_labels,
}
HEAD_REFS = {"helpers.models.replace_head": helpers.models.replace_head}
COLLATE_REFS = {"helpers.data.collate": helpers.data.datasets.collate}


# ------------------------------------------------------------------ dataset


@recorded
def check_dataset(dataset_cls) -> None:
    """The student's Dataset against the reference PneumoniaDataset on fresh synthetic data:
    the positive patients (training's default) and every patient (``positives_only=False``,
    as validation and test use it), negatives with ``boxes`` of shape (0, 4) included."""
    with tempfile.TemporaryDirectory(prefix="pneumonia-check-") as tmp:
        root = synth_pneumonia(Path(tmp) / "d", patients=10, seed=1234, size=80,
                               positive_fraction=0.6)
        raw = pd.read_csv(root / "labels.csv")
        negatives = set(raw.groupby("patientId")["Target"].max().loc[lambda t: t == 0].index)
        if not negatives:
            raise RuntimeError("the check's fixture has no negative patient")
        for name, transform, everyone in (
                ("resize to 56 px", eval_transforms(56), False),
                ("horizontal flip", flip_transform(), False),
                ("every patient (positives_only=False), resize to 56 px", eval_transforms(56),
                 True),
                ("every patient (positives_only=False), horizontal flip", flip_transform(),
                 True)):
            options = {"positives_only": False} if everyone else {}
            ds = dataset_cls(raw, root / "images", transform=transform, **options)
            ref = reference_datasets.PneumoniaDataset(
                helpers.data.dicom.read_labels(root / "labels.csv"), root / "images",
                patient_ids=list(ds.patient_ids), positives_only=not everyone,
                transform=transform)
            want = raw["patientId"].nunique() - (0 if everyone else len(negatives))
            if len(ds) != want or len(ref) != want or len(ds) == 0:
                fail("number of samples", f"{name}: 10 patients, {len(negatives)} negative",
                     want, len(ds))
            for i in range(len(ds)):
                image, target = run_without(ds.__getitem__, DATASET_REFS, i)
                ref_image, ref_target = ref[i]
                kind = "without" if ds.patient_ids[i] in negatives else "with"
                compare_sample(f"{name}, sample {i} (a patient {kind} boxes)", image, target,
                               ref_image, ref_target)


# ------------------------------------------------------------------ collate


@recorded
def check_collate(collate_fn) -> None:
    """Images of different sizes with different box counts stay separate, in order."""
    gen = torch.Generator().manual_seed(5)
    batch = []
    for h, w, n in ((40, 52, 0), (64, 48, 3), (33, 33, 1)):
        boxes = torch.tensor([[2.0, 3.0, 20.0, 25.0]] * n).reshape(-1, 4)
        batch.append((torch.rand(3, h, w, generator=gen),
                      {"boxes": boxes, "labels": torch.ones(n, dtype=torch.int64)}))
    out = run_without(collate_fn, COLLATE_REFS, batch)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("return value", "3 samples", "(images, targets)", type(out).__name__)
    images, targets = out
    for name, got, want in (("images", images, [b[0] for b in batch]),
                            ("targets", targets, [b[1] for b in batch])):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            fail(name, "3 samples of sizes 40x52, 64x48, 33x33", "a list of 3", got)
        if any(g is not w for g, w in zip(got, want, strict=True)):
            fail(f"{name}: the same objects, in order", "3 samples", "unchanged", "changed")


# ------------------------------------------------------------------ model head


@recorded
def check_head(replace_fn) -> None:
    """A new FastRCNNPredictor for 3 classes on a 5-class detector; the rest untouched."""
    torch.manual_seed(3)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=5, pretrained=False,
                                          min_size=64, max_size=64)
    backbone, old = model.backbone, model.roi_heads.box_predictor
    out = run_without(replace_fn, HEAD_REFS, model, 3)
    new = getattr(getattr(getattr(out, "roi_heads", None), "box_predictor", None), "cls_score",
                  None)
    pred = out.roi_heads.box_predictor if new is not None else None
    if not isinstance(pred, FastRCNNPredictor) or pred is old:
        fail("box predictor", "5-class model, num_classes=3", "a new FastRCNNPredictor", pred)
    shapes = (pred.cls_score.in_features, pred.cls_score.out_features,
              pred.bbox_pred.out_features)
    if shapes != (old.cls_score.in_features, 3, 12):
        fail("(in_features, classes, box outputs)", "num_classes=3",
              (old.cls_score.in_features, 3, 12), shapes)
    if out.backbone is not backbone:
        fail("backbone", "num_classes=3", "the same backbone object", "a different one")
    out.eval()
    with torch.no_grad():
        det = out([torch.rand(3, 64, 64)])[0]
    if len(det["labels"]) and int(det["labels"].max()) >= 3:
        fail("predicted labels", "num_classes=3", "labels < 3", det["labels"].tolist())


# ------------------------------------------------------------------ optimizer


@recorded
def check_optimizer(make_fn) -> None:
    """SGD over the trainable parameters only, with the given settings, and a StepLR."""
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(2, 1))
    for p in model[1].parameters():
        p.requires_grad_(False)
    fed = "lr=0.03, momentum=0.8, weight_decay=0.002, step_size=5, gamma=0.5"
    out = make_fn(model, lr=0.03, momentum=0.8, weight_decay=0.002, step_size=5, gamma=0.5)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("return value", fed, "(optimizer, scheduler)", type(out).__name__)
    opt, sched = out
    if not isinstance(opt, torch.optim.SGD):
        fail("optimizer type", fed, "torch.optim.SGD", type(opt).__name__)
    params = [p for g in opt.param_groups for p in g["params"]]
    want = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(want) or {id(p) for p in params} != {id(p) for p in want}:
        fail("parameters", fed + " (the middle layer frozen)",
              f"the {len(want)} trainable tensors", f"{len(params)} tensors")
    g = opt.param_groups[0]
    got = (g["lr"], g["momentum"], g["weight_decay"])
    if not np.allclose(got, (0.03, 0.8, 0.002)):
        fail("(lr, momentum, weight_decay)", fed, (0.03, 0.8, 0.002), got)
    if not isinstance(sched, torch.optim.lr_scheduler.StepLR) or sched.optimizer is not opt:
        fail("scheduler", fed, "a StepLR on that optimizer", type(sched).__name__)
    if (sched.step_size, sched.gamma) != (5, 0.5):
        fail("(step_size, gamma)", fed, (5, 0.5), (sched.step_size, sched.gamma))


# ------------------------------------------------------------------ precision / recall


@recorded
def check_precision_recall(pr_fn) -> None:
    """Student P/R against helpers.metrics.precision_recall on random scenes."""
    gen = np.random.default_rng(2024)
    for score_thresh, iou_thresh in ((0.5, 0.5), (0.3, 0.4), (0.0, 0.7)):
        preds, targets = random_scene(gen)
        want = helpers.metrics.precision_recall(preds, targets, score_thresh, iou_thresh)
        got = run_without(pr_fn, MATCH_REFS, preds, targets, torchvision.ops.box_iou,
                          score_thresh=score_thresh, iou_thresh=iou_thresh)
        compare_pr(got, want, f"8 random images, score_thresh={score_thresh}, "
                              f"iou_thresh={iou_thresh}")


# ------------------------------------------------------------------ calibration


@recorded
def check_calibration(bins_fn, ece_fn) -> None:
    """Student reliability bins and ECE against helpers.calibration, with 10 and 4 bins, on
    random detections and on scores exactly on the bin edges (right-closed bins, as stated)."""
    for fed, scores, correct in calibration_cases():
        for n_bins in (10, 4):
            want = helpers.calibration.reliability_bins(scores, correct, n_bins)
            got = run_without(bins_fn, CALIBRATION_REFS, scores.copy(), correct.copy(),
                              n_bins=n_bins)
            where = f"{fed}; n_bins={n_bins}"
            got = pd.DataFrame(got)
            for col in ("count", "confidence", "accuracy"):
                if col not in got.columns or len(got) != n_bins:
                    fail("table", where, f"{n_bins} rows with count, confidence, accuracy",
                          f"{len(got)} rows, columns {list(got.columns)}")
                if not np.allclose(got[col].to_numpy(float), want[col].to_numpy(float),
                                   atol=1e-6, equal_nan=True):
                    fail(f"column {col}", where, want[col].round(4).tolist(),
                          got[col].astype(float).round(4).tolist())
            ece = float(run_without(ece_fn, CALIBRATION_REFS, scores.copy(), correct.copy(),
                                    n_bins=n_bins))
            ref = helpers.calibration.expected_calibration_error(scores, correct, n_bins)
            if not math.isclose(ece, ref, abs_tol=1e-6):
                fail(f"ECE with n_bins={n_bins}", where, round(ref, 6), round(ece, 6))


@recorded
def check_detection_scores(scores_fn) -> None:
    """Every prediction's (score, TP?) against helpers.calibration.detection_confidences."""
    gen = np.random.default_rng(4242)
    for iou_thresh in (0.5, 0.3):
        preds, targets = random_scene(gen, n_images=10)
        want = helpers.calibration.detection_confidences(preds, targets, iou_thresh)
        got = run_without(scores_fn, MATCH_REFS, preds, targets, torchvision.ops.box_iou,
                          iou_thresh=iou_thresh)
        fed = f"10 random images, iou_thresh={iou_thresh}"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail("return value", fed, "(scores, is_tp)", type(got).__name__)
        scores = np.asarray(got[0], dtype=np.float64).reshape(-1)
        flags = np.asarray(got[1]).astype(bool).reshape(-1)
        if len(scores) != len(want[0]) or len(flags) != len(scores):
            fail("number of detections", fed, len(want[0]), (len(scores), len(flags)))
        # any order of the detections will do: compare the sorted (score, TP) pairs
        pairs = sorted(zip(np.round(scores, 6).tolist(), flags.tolist(), strict=True))
        ref = sorted(zip(np.round(want[0], 6).tolist(), want[1].astype(bool).tolist(),
                         strict=True))
        if pairs != ref:
            fail("(score, is_tp) pairs", fed, f"{sum(t for _, t in ref)} TPs of {len(ref)}",
                  f"{sum(t for _, t in pairs)} TPs of {len(pairs)}")

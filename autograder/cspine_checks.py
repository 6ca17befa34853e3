"""Hidden checks of the C-spine notebook (grading only: never shipped to students).

As in ``pneumonia_checks``: each check runs one exercise's function on fresh inputs,
compares it with a reference computed outside the student's call, and fails when the
student's function calls the reference it was asked to write. The IoU and Grad-CAM
exercises are the first assignment's, so their checks come from ``common``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import h5py
import numpy as np
import sklearn.calibration
import torch
import torchvision.ops
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

import helpers.calibration
import helpers.metrics
import helpers.models
from autograder import common, reference_datasets
from autograder.common import (
    MATCH_REFS,
    calibration_cases,
    check_iou,
    compare_pr,
    compare_sample,
    fail,
    flip_transform,
    random_scene,
)
from autograder.isolation import recorded
from autograder.tripwire import run_without
from helpers.data.synthetic import synth_cspine
from helpers.transforms import eval_transforms

__all__ = ["check_dataset", "check_head", "check_optimizer", "check_iou", "check_match",
           "check_precision_recall", "check_fine_tuning", "check_ece", "check_gradcam"]

DATASET_REFS = {
    "autograder.reference_datasets": reference_datasets,
}
HEAD_REFS = {"helpers.models.replace_head": helpers.models.replace_head,
             "helpers.models.build_detector": helpers.models.build_detector}
ECE_REFS = {
    "helpers.calibration.reliability_bins": helpers.calibration.reliability_bins,
    "helpers.calibration.expected_calibration_error":
        helpers.calibration.expected_calibration_error,
    "sklearn.calibration.calibration_curve": sklearn.calibration.calibration_curve,
}


# ------------------------------------------------------------------ dataset


def _fixture(folder: Path) -> tuple[Path, list[int]]:
    """A fresh synthetic file in the real encoding ([x, y, width, height] rows, -1 fill)
    with known rows planted: an extra box, a sub-pixel box, a slice that stops short of 1
    (as after the packer's resize) and a constant slice (0, as the packer writes it).
    Returns its path and the slices to compare."""
    path = synth_cspine(folder / "check.h5", slices=40, seed=4321, size=64)
    with h5py.File(path, "r+") as f:
        boxes, labels = f["bboxes"][()], f["labels"][()]
        fractured, empty = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        a, b = int(fractured[0]), int(fractured[-1])
        n_a = int((boxes[a] != -1).any(axis=1).sum())
        boxes[a, n_a] = [30.0, 20.0, 14.0, 10.0]  # read as corners, x1 > x2 and y1 > y2
        boxes[a, n_a + 1] = [5.0, 5.0, 0.6, 20.0]  # 0.6 px wide: dropped
        boxes[b, 0] = [40.0, 30.0, 12.0, 9.0]
        f["bboxes"][...] = boxes
        short = int(empty[-1])
        f["images"][short] = 0.05 + 0.85 * f["images"][short]
        constant = int(empty[0])
        f["images"][constant] = 0.0
    return path, [a, b, constant, short]


def _watched(transform, fed: str):
    """The transform, after a look at the boxes the student's Dataset hands it: corners
    inside the image, each at least a little wide and high (a -1 padding row decoded as a
    box, or a row read as corners, fails here with a clear message instead of deep inside
    albumentations)."""

    def call(*args, **kwargs):
        boxes = np.asarray(kwargs.get("bboxes", []), dtype=np.float64).reshape(-1, 4)
        image = np.asarray(kwargs.get("image", np.zeros((0, 0))))
        h, w = image.shape[:2] if image.ndim >= 2 else (math.inf, math.inf)
        bad = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
               | (boxes[:, :2] < -1e-3).any(axis=1) | (boxes[:, 2] > w + 1e-3)
               | (boxes[:, 3] > h + 1e-3))
        if bad.any():
            fail("boxes given to the transform", fed,
                 "corners [x1, y1, x2, y2] inside the image with x2 > x1 and y2 > y1 (rows "
                 "of -1 dropped, [x, y, width, height] decoded)", boxes[bad].tolist())
        return transform(*args, **kwargs)

    return call


@recorded
def check_dataset(dataset_cls) -> None:
    """The student's Dataset against the reference CSpineH5Dataset on a fresh file."""
    with tempfile.TemporaryDirectory(prefix="cspine-check-") as tmp:
        path, picks = _fixture(Path(tmp))
        for name, transform in (("resize to 48 px", eval_transforms(48)),
                                ("horizontal flip", flip_transform())):
            ds = dataset_cls(path, picks, _watched(transform, f"{name}, slices {picks}"))
            ref = reference_datasets.CSpineH5Dataset(path, indices=picks,
                                                         transform=transform)
            if len(ds) != len(ref):
                fail("number of samples", f"{name}, slices {picks}", len(ref), len(ds))
            for k in range(len(ds)):
                image, target = run_without(ds.__getitem__, DATASET_REFS, k)
                ref_image, ref_target = ref[k]
                compare_sample(f"{name}, file row {picks[k]}", image, target, ref_image,
                                ref_target)


# ------------------------------------------------------------------ model head


@recorded
def check_head(adapt_fn) -> None:
    """A new 4-class predictor and inputs kept at 80 px, on a detector built for 800 px."""
    torch.manual_seed(5)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=7, pretrained=False,
                                          min_size=800, max_size=1333)
    backbone, old = model.backbone, model.roi_heads.box_predictor
    fed = "7-class detector resizing to 800/1333 px, num_classes=4, image_size=80"
    out = run_without(adapt_fn, HEAD_REFS, model, 4, 80)
    pred = getattr(getattr(out, "roi_heads", None), "box_predictor", None)
    if not isinstance(pred, FastRCNNPredictor) or pred is old:
        fail("box predictor", fed, "a new FastRCNNPredictor", pred)
    shapes = (pred.cls_score.in_features, pred.cls_score.out_features,
              pred.bbox_pred.out_features)
    if shapes != (old.cls_score.in_features, 4, 16):
        fail("(in_features, classes, box outputs)", fed, (old.cls_score.in_features, 4, 16),
              shapes)
    if out.backbone is not backbone:
        fail("backbone", fed, "the same backbone object", "a different one")
    sizes = (tuple(out.transform.min_size), out.transform.max_size)
    if sizes != ((80,), 80):
        fail("(transform.min_size, transform.max_size)", fed, ((80,), 80), sizes)
    out.eval()
    with torch.no_grad():
        seen = out.transform([torch.rand(3, 80, 80)])[0].image_sizes[0]
    if tuple(seen) != (80, 80):
        fail("size an 80x80 slice is resized to", fed, (80, 80), tuple(seen))


# ------------------------------------------------------------------ optimizer


def _three_layers() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(2, 1))
    for p in model[1].parameters():
        p.requires_grad_(False)
    return model


def _same_params(opt, want: list, what: str, fed: str) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    if len(params) != len(want) or {id(p) for p in params} != {id(p) for p in want}:
        fail(what, fed, f"the {len(want)} trainable tensors", f"{len(params)} tensors")


@recorded
def check_optimizer(make_fn) -> None:
    """AdamW over the trainable parameters only, with the given settings, and a StepLR."""
    model = _three_layers()
    fed = "lr=3e-4, weight_decay=0.02, step_size=4, gamma=0.3 (the middle layer frozen)"
    out = make_fn(model, lr=3e-4, weight_decay=0.02, step_size=4, gamma=0.3)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("return value", fed, "(optimizer, scheduler)", type(out).__name__)
    opt, sched = out
    if not isinstance(opt, torch.optim.AdamW):
        fail("optimizer type", fed, "torch.optim.AdamW", type(opt).__name__)
    _same_params(opt, [p for p in model.parameters() if p.requires_grad], "parameters", fed)
    got = (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"])
    if not np.allclose(got, (3e-4, 0.02)):
        fail("(lr, weight_decay)", fed, (3e-4, 0.02), got)
    if not isinstance(sched, torch.optim.lr_scheduler.StepLR) or sched.optimizer is not opt:
        fail("scheduler", fed, "a StepLR on that optimizer", type(sched).__name__)
    if (sched.step_size, sched.gamma) != (4, 0.3):
        fail("(step_size, gamma)", fed, (4, 0.3), (sched.step_size, sched.gamma))


# ------------------------------------------------------------------ matching


@recorded
def check_match(match_fn) -> None:
    """Per-image matches against helpers.metrics.match_detections on random scenes."""
    gen = np.random.default_rng(31)
    for iou_thresh in (0.5, 0.3, 0.75):
        preds, targets = random_scene(gen, n_images=10)
        preds[0]["scores"][:] = 0.5  # ties keep their input order
        for k, (p, t) in enumerate(zip(preds, targets, strict=True)):
            want = helpers.metrics.match_detections(p, t, iou_thresh, score_thresh=-math.inf)
            got = run_without(match_fn, MATCH_REFS, p, t, torchvision.ops.box_iou,
                              iou_thresh=iou_thresh)
            fed = (f"random image {k}: {len(p['boxes'])} predictions, {len(t['boxes'])} "
                   f"boxes, iou_thresh={iou_thresh}")
            if not isinstance(got, dict) or not {"scores", "is_tp", "n_gt"} <= set(got):
                fail("return value", fed, "a dict with scores, is_tp, n_gt", got)
            scores = np.asarray(got["scores"], dtype=np.float64).reshape(-1)
            if scores.shape != want.scores.shape or not np.allclose(scores, want.scores):
                fail("scores, in descending order", fed, want.scores.round(3).tolist(),
                      scores.round(3).tolist())
            flags = np.asarray(got["is_tp"]).astype(bool).reshape(-1)
            if flags.tolist() != want.is_tp.tolist():
                fail("is_tp", fed, want.is_tp.tolist(), flags.tolist())
            if int(got["n_gt"]) != len(t["boxes"]):
                fail("n_gt", fed, len(t["boxes"]), got["n_gt"])


@recorded
def check_precision_recall(pr_fn) -> None:
    """P/R from matches against helpers.metrics.precision_recall of the same scenes."""
    gen = np.random.default_rng(8)
    preds, targets = random_scene(gen, n_images=12)
    matches = []
    for p, t in zip(preds, targets, strict=True):
        m = helpers.metrics.match_detections(p, t, 0.5, score_thresh=-math.inf)
        matches.append({"scores": m.scores.copy(), "is_tp": m.is_tp.copy(),
                        "n_gt": len(t["boxes"])})
    for score_thresh in (0.0, 0.35, 0.8, 1.01):
        want = helpers.metrics.precision_recall(preds, targets, score_thresh, 0.5)
        got = run_without(pr_fn, MATCH_REFS, [dict(m) for m in matches],
                          score_thresh=score_thresh)
        compare_pr(got, want, f"12 random images' matches, score_thresh={score_thresh}")


# ------------------------------------------------------------------ fine-tuning


@recorded
def check_fine_tuning(setup_fn) -> None:
    """Backbone frozen, every head parameter trainable and optimised, the plateau schedule."""
    torch.manual_seed(9)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=2, pretrained=False,
                                          min_size=64, max_size=64)
    model.rpn.head.conv[0][0].weight.requires_grad_(False)  # frozen earlier: must thaw
    model.backbone.fpn.layer_blocks[0][0].weight.requires_grad_(True)
    fed = "a small detector, lr=2e-5, weight_decay=0.05, factor=0.2, patience=3"
    out = setup_fn(model, lr=2e-5, weight_decay=0.05, factor=0.2, patience=3)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("return value", fed, "(optimizer, scheduler)", type(out).__name__)
    opt, sched = out
    thawed = [n for n, p in model.named_parameters() if n.startswith("backbone.")
              and p.requires_grad]
    if thawed:
        fail("backbone parameters still trainable", fed, "none", thawed[:3])
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    frozen = [n for n, p in model.named_parameters() if not n.startswith("backbone.")
              and not p.requires_grad]
    if frozen:
        fail("head parameters left frozen", fed, "none", frozen[:3])
    if not isinstance(opt, torch.optim.AdamW):
        fail("optimizer type", fed, "torch.optim.AdamW", type(opt).__name__)
    _same_params(opt, heads, "parameters in the optimizer (the heads')", fed)
    got = (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"])
    if not np.allclose(got, (2e-5, 0.05)):
        fail("(lr, weight_decay)", fed, (2e-5, 0.05), got)
    if (not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
            or sched.optimizer is not opt):
        fail("scheduler", fed, "a ReduceLROnPlateau on that optimizer", type(sched).__name__)
    if (sched.mode, sched.factor, sched.patience) != ("min", 0.2, 3):
        fail("(mode, factor, patience)", fed, ("min", 0.2, 3),
              (sched.mode, sched.factor, sched.patience))


# ------------------------------------------------------------------ calibration


@recorded
def check_ece(ece_fn) -> None:
    """ECE against helpers.calibration, with 10 and 4 bins, on random detections and on scores
    exactly on the bin edges (right-closed bins, as stated), and NaN for no detections."""
    for fed, scores, correct in calibration_cases():
        for n_bins in (10, 4):
            want = helpers.calibration.expected_calibration_error(scores, correct, n_bins)
            got = float(run_without(ece_fn, ECE_REFS, scores.copy(), correct.copy(),
                                    n_bins=n_bins))
            if not math.isclose(got, want, abs_tol=1e-6):
                fail(f"ECE with n_bins={n_bins}", fed, round(want, 6), round(got, 6))
    empty = float(run_without(ece_fn, ECE_REFS, np.zeros(0), np.zeros(0, dtype=bool)))
    if not math.isnan(empty):
        fail("ECE of no detections", "empty arrays", "nan", empty)


# ------------------------------------------------------------------ Grad-CAM


@recorded
def check_gradcam(cam_fn) -> None:
    """The first assignment's Grad-CAM check, and the same maps on a frozen-backbone model:
    the notebook runs the student's function on the fine-tuned model, whose backbone is
    frozen, so a passing solution must make its input require grad."""
    common.check_gradcam(cam_fn, frozen_backbone=True)

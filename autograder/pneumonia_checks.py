"""Hidden checks of the pneumonia notebook (grading only: never shipped to students).

Each check runs one exercise's function on fresh inputs (not the notebook's visible ones),
compares the result with a reference computed outside the student's call, and fails when
the student's function calls the reference it was asked to write (``tripwire.run_without``).
A failed check raises ``AssertionError`` naming what was fed in, expected and got.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import sklearn.calibration
import torch
import torchvision.ops
import torchvision.ops.boxes
from albumentations.pytorch import ToTensorV2
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

import helpers.calibration
import helpers.data.datasets
import helpers.data.dicom
import helpers.metrics
import helpers.models
from autograder import gradcam_reference
from autograder.tripwire import run_without
from helpers.data.synthetic import synth_pneumonia
from helpers.transforms import eval_transforms

IOU_REFS = {
    "helpers.metrics.box_iou": helpers.metrics.box_iou,
    "torchvision.ops.box_iou": torchvision.ops.box_iou,
    "torchvision.ops.generalized_box_iou": torchvision.ops.generalized_box_iou,
    "torchvision.ops.boxes._box_inter_union": torchvision.ops.boxes._box_inter_union,
}
MATCH_REFS = {
    "helpers.metrics.precision_recall": helpers.metrics.precision_recall,
    "helpers.metrics.match_detections": helpers.metrics.match_detections,
    "helpers.metrics.threshold_sweep": helpers.metrics.threshold_sweep,
    "helpers.metrics._match": helpers.metrics._match,
    "helpers.metrics._greedy": helpers.metrics._greedy,
    "helpers.calibration.detection_confidences": helpers.calibration.detection_confidences,
}
CALIBRATION_REFS = {
    "helpers.calibration.reliability_bins": helpers.calibration.reliability_bins,
    "helpers.calibration.expected_calibration_error":
        helpers.calibration.expected_calibration_error,
    "sklearn.calibration.calibration_curve": sklearn.calibration.calibration_curve,
}
DATASET_REFS = {
    "helpers.data.datasets.to_sample": helpers.data.datasets.to_sample,
    "helpers.data.datasets.make_target": helpers.data.datasets.make_target,
    "helpers.data.PneumoniaDataset.__getitem__": helpers.data.datasets.PneumoniaDataset.__getitem__,
    "helpers.data.read_labels": helpers.data.dicom.read_labels,
}
HEAD_REFS = {"helpers.models.replace_head": helpers.models.replace_head}
COLLATE_REFS = {"helpers.data.collate": helpers.data.datasets.collate}
GRADCAM_REFS = {"autograder.gradcam_reference.gradcam_for_box": gradcam_reference.gradcam_for_box}


def _fail(what: str, fed, expected, got) -> None:
    raise AssertionError(f"{what}\n  fed in:   {fed}\n  expected: {expected}\n  got:      {got}")


# ------------------------------------------------------------------ dataset


def _flip() -> A.Compose:
    return A.Compose([A.HorizontalFlip(p=1.0), ToTensorV2()],
                     bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                     strict=True)


def check_dataset(dataset_cls) -> None:
    """The student's Dataset against helpers.data.PneumoniaDataset on fresh synthetic data."""
    with tempfile.TemporaryDirectory(prefix="pneumonia-check-") as tmp:
        root = synth_pneumonia(Path(tmp) / "d", patients=10, seed=1234, size=80,
                               positive_fraction=0.6)
        raw = pd.read_csv(root / "labels.csv")
        for name, transform in (("resize to 56 px", eval_transforms(56)),
                                ("horizontal flip", _flip())):
            ds = dataset_cls(raw, root / "images", transform=transform)
            ref = helpers.data.datasets.PneumoniaDataset(
                helpers.data.dicom.read_labels(root / "labels.csv"), root / "images",
                patient_ids=list(ds.patient_ids), transform=transform)
            if len(ds) != len(ref) or len(ds) == 0:
                _fail("number of samples", name, len(ref), len(ds))
            for i in range(len(ds)):
                image, target = run_without(ds.__getitem__, DATASET_REFS, i)
                ref_image, ref_target = ref[i]
                _compare_sample(f"{name}, sample {i}", image, target, ref_image, ref_target)


def _compare_sample(where, image, target, ref_image, ref_target) -> None:
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32:
        _fail("image type", where, "float32 tensor", f"{type(image).__name__} "
              f"{getattr(image, 'dtype', '')}")
    if tuple(image.shape) != tuple(ref_image.shape) or not torch.allclose(image, ref_image,
                                                                          atol=1e-4):
        _fail("image (shape [3,H,W], values in [0,1])", where, tuple(ref_image.shape),
              tuple(image.shape))
    for key in ("boxes", "labels", "image_id", "area", "iscrowd"):
        got, want = target.get(key) if isinstance(target, dict) else None, ref_target[key]
        if not isinstance(got, torch.Tensor) or got.dtype != want.dtype:
            _fail(f"target['{key}'] dtype", where, want.dtype, getattr(got, "dtype", got))
        if tuple(got.shape) != tuple(want.shape) or not torch.allclose(
                got.double(), want.double(), atol=1e-3):
            _fail(f"target['{key}']", where, want.tolist(), got.tolist())


# ------------------------------------------------------------------ collate


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
        _fail("return value", "3 samples", "(images, targets)", type(out).__name__)
    images, targets = out
    for name, got, want in (("images", images, [b[0] for b in batch]),
                            ("targets", targets, [b[1] for b in batch])):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            _fail(name, "3 samples of sizes 40x52, 64x48, 33x33", "a list of 3", got)
        if any(g is not w for g, w in zip(got, want, strict=True)):
            _fail(f"{name}: the same objects, in order", "3 samples", "unchanged", "changed")


# ------------------------------------------------------------------ model head


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
        _fail("box predictor", "5-class model, num_classes=3", "a new FastRCNNPredictor", pred)
    shapes = (pred.cls_score.in_features, pred.cls_score.out_features,
              pred.bbox_pred.out_features)
    if shapes != (old.cls_score.in_features, 3, 12):
        _fail("(in_features, classes, box outputs)", "num_classes=3",
              (old.cls_score.in_features, 3, 12), shapes)
    if out.backbone is not backbone:
        _fail("backbone", "num_classes=3", "the same backbone object", "a different one")
    out.eval()
    with torch.no_grad():
        det = out([torch.rand(3, 64, 64)])[0]
    if len(det["labels"]) and int(det["labels"].max()) >= 3:
        _fail("predicted labels", "num_classes=3", "labels < 3", det["labels"].tolist())


# ------------------------------------------------------------------ optimizer


def check_optimizer(make_fn) -> None:
    """SGD over the trainable parameters only, with the given settings, and a StepLR."""
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2), nn.Linear(2, 1))
    for p in model[1].parameters():
        p.requires_grad_(False)
    fed = "lr=0.03, momentum=0.8, weight_decay=0.002, step_size=5, gamma=0.5"
    out = make_fn(model, lr=0.03, momentum=0.8, weight_decay=0.002, step_size=5, gamma=0.5)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        _fail("return value", fed, "(optimizer, scheduler)", type(out).__name__)
    opt, sched = out
    if not isinstance(opt, torch.optim.SGD):
        _fail("optimizer type", fed, "torch.optim.SGD", type(opt).__name__)
    params = [p for g in opt.param_groups for p in g["params"]]
    want = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(want) or {id(p) for p in params} != {id(p) for p in want}:
        _fail("parameters", fed + " (the middle layer frozen)",
              f"the {len(want)} trainable tensors", f"{len(params)} tensors")
    g = opt.param_groups[0]
    got = (g["lr"], g["momentum"], g["weight_decay"])
    if not np.allclose(got, (0.03, 0.8, 0.002)):
        _fail("(lr, momentum, weight_decay)", fed, (0.03, 0.8, 0.002), got)
    if not isinstance(sched, torch.optim.lr_scheduler.StepLR) or sched.optimizer is not opt:
        _fail("scheduler", fed, "a StepLR on that optimizer", type(sched).__name__)
    if (sched.step_size, sched.gamma) != (5, 0.5):
        _fail("(step_size, gamma)", fed, (5, 0.5), (sched.step_size, sched.gamma))


# ------------------------------------------------------------------ IoU


def random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """n random xyxy boxes inside a size x size image (float32)."""
    xy = torch.rand(n, 2, generator=gen) * size * 0.8
    wh = torch.rand(n, 2, generator=gen) * size * 0.4 + 2
    return torch.cat([xy, xy + wh], dim=1)


def check_iou(iou_fn) -> None:
    """Random boxes (many overlapping), empty inputs and touching boxes."""
    gen = torch.Generator().manual_seed(99)
    a, b = random_boxes(7, gen), random_boxes(5, gen)
    b[0] = a[2]  # one identical pair
    b[1] = torch.tensor([a[3, 2], a[3, 1], a[3, 2] + 10, a[3, 3]])  # touching a[3]: IoU 0
    want = torchvision.ops.box_iou(a, b)
    got = torch.as_tensor(run_without(iou_fn, IOU_REFS, a.clone(), b.clone())).float()
    if tuple(got.shape) != (7, 5) or not torch.allclose(got, want, atol=1e-5):
        _fail("IoU of 7 x 5 random boxes", "seed 99", want.numpy().round(3),
              got.numpy().round(3) if got.numel() else got)
    empty = torch.as_tensor(run_without(iou_fn, IOU_REFS, torch.zeros(0, 4), b))
    if tuple(empty.shape) != (0, 5):
        _fail("IoU with no boxes on one side", "a: [0,4], b: [5,4]", (0, 5), tuple(empty.shape))


# ------------------------------------------------------------------ precision / recall


def random_scene(gen: np.random.Generator, n_images: int = 8) -> tuple[list[dict], list[dict]]:
    """Ground truth and jittered, duplicated and spurious predictions (label 1)."""
    preds, targets = [], []
    for _ in range(n_images):
        n = int(gen.integers(0, 4))
        xy = gen.uniform(0, 150, (n, 2))
        gt = np.hstack([xy, xy + gen.uniform(15, 60, (n, 2))]).astype(np.float32)
        hits = gt[gen.random(n) < 0.7]
        hits = hits + gen.normal(0, 6, hits.shape)  # found, with a sloppy box
        dupes = hits[: int(gen.integers(0, len(hits) + 1))] + gen.normal(0, 3, (1, 4))
        k = int(gen.integers(0, 3))
        fxy = gen.uniform(0, 150, (k, 2))
        spurious = np.hstack([fxy, fxy + gen.uniform(10, 50, (k, 2))])
        boxes = np.vstack([hits, dupes, spurious]).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        preds.append({"boxes": torch.from_numpy(boxes),
                      "scores": torch.from_numpy(gen.uniform(0.05, 1, len(boxes))).float(),
                      "labels": torch.ones(len(boxes), dtype=torch.int64)})
        targets.append({"boxes": torch.from_numpy(gt),
                        "labels": torch.ones(len(gt), dtype=torch.int64)})
    return preds, targets


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


def compare_pr(got, want: dict, fed: str) -> None:
    """A student's TP/FP/FN/precision/recall dict against the reference's (NaN == NaN)."""
    if not isinstance(got, dict):
        _fail("return value", fed, "a dict", type(got).__name__)
    counts = tuple(int(got.get(k, -1)) for k in ("tp", "fp", "fn"))
    if counts != (want["tp"], want["fp"], want["fn"]):
        _fail("(tp, fp, fn)", fed, (want["tp"], want["fp"], want["fn"]), counts)
    for key in ("precision", "recall"):
        g, w = float(got.get(key, -1)), want[key]
        if not (math.isclose(g, w, abs_tol=1e-6) or (math.isnan(g) and math.isnan(w))):
            _fail(key, fed, w, g)


# ------------------------------------------------------------------ calibration


def check_calibration(bins_fn, ece_fn) -> None:
    """Student reliability bins and ECE against helpers.calibration on random detections."""
    gen = np.random.default_rng(77)
    scores = np.concatenate([gen.uniform(0, 1, 300) ** 0.5, [0.0, 1.0]])
    correct = gen.random(len(scores)) < scores * 0.8  # over-confident on purpose
    want = helpers.calibration.reliability_bins(scores, correct)
    got = run_without(bins_fn, CALIBRATION_REFS, scores.copy(), correct.copy())
    fed = "302 random scores (0.0 and 1.0 included), correct ~ Bernoulli(0.8 x score)"
    got = pd.DataFrame(got)
    for col in ("count", "confidence", "accuracy"):
        if col not in got.columns or len(got) != 10:
            _fail("table", fed, "10 rows with count, confidence, accuracy",
                  f"{len(got)} rows, columns {list(got.columns)}")
        if not np.allclose(got[col].to_numpy(float), want[col].to_numpy(float), atol=1e-6,
                           equal_nan=True):
            _fail(f"column {col}", fed, want[col].round(4).tolist(),
                  got[col].astype(float).round(4).tolist())
    ece = float(run_without(ece_fn, CALIBRATION_REFS, scores.copy(), correct.copy()))
    ref = helpers.calibration.expected_calibration_error(scores, correct)
    if not math.isclose(ece, ref, abs_tol=1e-6):
        _fail("ECE", fed, round(ref, 6), round(ece, 6))


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
            _fail("return value", fed, "(scores, is_tp)", type(got).__name__)
        scores = np.asarray(got[0], dtype=np.float64).reshape(-1)
        flags = np.asarray(got[1]).astype(bool).reshape(-1)
        if len(scores) != len(want[0]) or len(flags) != len(scores):
            _fail("number of detections", fed, len(want[0]), (len(scores), len(flags)))
        # any order of the detections will do: compare the sorted (score, TP) pairs
        pairs = sorted(zip(np.round(scores, 6).tolist(), flags.tolist(), strict=True))
        ref = sorted(zip(np.round(want[0], 6).tolist(), want[1].astype(bool).tolist(),
                         strict=True))
        if pairs != ref:
            _fail("(score, is_tp) pairs", fed, f"{sum(t for _, t in ref)} TPs of {len(ref)}",
                  f"{sum(t for _, t in pairs)} TPs of {len(pairs)}")


# ------------------------------------------------------------------ Grad-CAM


def tiny_detector(seed: int = 0, size: int = 64) -> nn.Module:
    """A small random-init detector that always predicts (box score threshold 0)."""
    torch.manual_seed(seed)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=2, pretrained=False,
                                          min_size=size, max_size=size, box_score_thresh=0.0)
    return model.eval()


def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in module.modules())


def check_gradcam(cam_fn) -> None:
    """Student Grad-CAM maps against the reference for two predicted boxes, hooks released."""
    model = tiny_detector(seed=11)
    image = torch.full((3, 64, 64), 0.15)
    image[:, 8:30, 34:58] = 0.85
    with torch.no_grad():
        boxes = model([image])[0]["boxes"]
    if len(boxes) < 2:
        raise RuntimeError("the check's fixture model predicted fewer than 2 boxes")
    ious = torchvision.ops.box_iou(boxes[:1], boxes)[0]
    picks = [0, int(torch.argmin(ious))]
    for k in picks:
        box = boxes[k].clone()
        want = gradcam_reference.gradcam_for_box(model, image, box)
        got = np.asarray(run_without(cam_fn, GRADCAM_REFS, model, image.clone(), box.clone()),
                         dtype=np.float32)
        if _hooks(model):
            _fail("hooks after the call", f"box {k}", 0, _hooks(model))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-3):
            _fail(f"Grad-CAM map of predicted box {k}", box.tolist(),
                  f"shape {want.shape}, mean {want.mean():.4f}",
                  f"shape {got.shape}, mean {float(got.mean()) if got.size else 'n/a'}")

"""What the assignments' hidden checks share (grading only: never shipped to students).

* ``fail``: the one failure message, naming what was fed in, what was expected and got;
* the references an exercise may not call (``IOU_REFS``, ``MATCH_REFS``, ``GRADCAM_REFS``),
  whole modules where the reference has private helpers (see ``autograder.tripwire``);
* fixtures: random boxes and scenes, an always-predicting tiny detector, a flip transform;
* comparisons of a student's sample and P/R dict with the reference's;
* assignment 1's IoU and Grad-CAM checks, ``check_iou`` and ``check_gradcam`` (assignment
  2 no longer grades them; its tests run ``check_gradcam`` on a frozen backbone, as that
  notebook uses the pasted function on its fine-tuned model).
"""

from __future__ import annotations

import math

import albumentations as A
import numpy as np
import torch
import torchvision.ops
import torchvision.ops.boxes
from albumentations.pytorch import ToTensorV2
from torch import nn

import helpers.calibration
import helpers.matching
import helpers.metrics
import helpers.models
from autograder import gradcam_reference
from autograder.isolation import recorded
from autograder.tripwire import run_without

__all__ = ["BIN_EDGE_SCORES", "GRADCAM_REFS", "IOU_REFS", "MATCH_REFS", "calibration_cases",
           "check_gradcam", "check_iou", "compare_pr", "compare_sample", "fail",
           "flip_transform", "hook_count", "random_boxes", "random_scene", "tiny_detector"]

# box_iou "and its relatives": every IoU function of torchvision.ops.boxes, private ones
# included, found by name so a rename there keeps them watched; box_area, box_convert and
# the other box utilities stay allowed, as the notebooks' text says.
IOU_REFS = {
    "helpers.metrics.box_iou": helpers.metrics.box_iou,
    **{f"torchvision.ops.boxes.{name}": func for name, func in vars(torchvision.ops.boxes).items()
       if callable(func) and ("iou" in name or "inter_union" in name)},
}
MATCH_REFS = {
    "helpers.matching": helpers.matching,  # every score-ordered matching step
    "helpers.metrics.precision_recall": helpers.metrics.precision_recall,
    "helpers.metrics.match_detections": helpers.metrics.match_detections,
    "helpers.metrics.threshold_sweep": helpers.metrics.threshold_sweep,
    "helpers.calibration.detection_confidences": helpers.calibration.detection_confidences,
}
GRADCAM_REFS = {"autograder.gradcam_reference.gradcam_for_box": gradcam_reference.gradcam_for_box}


def fail(what: str, fed, expected, got) -> None:
    """Fail a check: what differs, what was fed in, what was expected and what came back."""
    raise AssertionError(f"{what}\n  fed in:   {fed}\n  expected: {expected}\n  got:      {got}")


def flip_transform() -> A.Compose:
    """A horizontal flip with its boxes, then a tensor: an augmentation the checks feed in."""
    return A.Compose([A.HorizontalFlip(p=1.0), ToTensorV2()],
                     bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]),
                     strict=True)


def compare_sample(where, image, target, ref_image, ref_target) -> None:
    """A student's (image, target) sample against the reference dataset's."""
    if not isinstance(image, torch.Tensor) or image.dtype != torch.float32:
        fail("image type", where, "float32 tensor", f"{type(image).__name__} "
              f"{getattr(image, 'dtype', '')}")
    if tuple(image.shape) != tuple(ref_image.shape) or not torch.allclose(image, ref_image,
                                                                          atol=1e-4):
        def describe(im):
            return (f"shape {tuple(im.shape)}, values in [{float(im.min()):.4f}, "
                    f"{float(im.max()):.4f}]" if im.numel() else f"shape {tuple(im.shape)}")

        fail("image (shape [3,H,W], values in [0,1])", where, describe(ref_image),
             describe(image))
    for key in ("boxes", "labels", "image_id", "area", "iscrowd"):
        got, want = target.get(key) if isinstance(target, dict) else None, ref_target[key]
        if not isinstance(got, torch.Tensor) or got.dtype != want.dtype:
            fail(f"target['{key}'] dtype", where, want.dtype, getattr(got, "dtype", got))
        if key == "image_id" and got.numel() == 1 == want.numel():
            got, want = got.reshape(()), want.reshape(())  # tensor(i) and tensor([i]) both do
        if tuple(got.shape) != tuple(want.shape) or not torch.allclose(
                got.double(), want.double(), atol=1e-3):
            fail(f"target['{key}']", where, want.tolist(), got.tolist())


def random_boxes(n: int, gen: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """n random xyxy boxes inside a size x size image (float32)."""
    xy = torch.rand(n, 2, generator=gen) * size * 0.8
    wh = torch.rand(n, 2, generator=gen) * size * 0.4 + 2
    return torch.cat([xy, xy + wh], dim=1)


@recorded
def check_iou(iou_fn) -> None:
    """Random boxes (many overlapping), empty inputs and touching boxes."""
    gen = torch.Generator().manual_seed(99)
    a, b = random_boxes(7, gen), random_boxes(5, gen)
    b[0] = a[2]  # one identical pair
    b[1] = torch.tensor([a[3, 2], a[3, 1], a[3, 2] + 10, a[3, 3]])  # touching a[3]: IoU 0
    want = torchvision.ops.box_iou(a, b)
    got = torch.as_tensor(run_without(iou_fn, IOU_REFS, a.clone(), b.clone())).float()
    if tuple(got.shape) != (7, 5) or not torch.allclose(got, want, atol=1e-5):
        fail("IoU of 7 x 5 random boxes", "seed 99", want.numpy().round(3),
              got.numpy().round(3) if got.numel() else got)
    empty = torch.as_tensor(run_without(iou_fn, IOU_REFS, torch.zeros(0, 4), b))
    if tuple(empty.shape) != (0, 5):
        fail("IoU with no boxes on one side", "a: [0,4], b: [5,4]", (0, 5), tuple(empty.shape))


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



# Both notebooks state one bin convention for calibration (assignment 2 for helpers' ECE),
# scikit-learn's calibration_curve(strategy="uniform") (np.searchsorted on the inner edges,
# side="left"):
# bins closed on the right, [0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1], so 0.0 and 0.1 fall
# in the first of 10 bins and 1.0 in the last. Scores exactly on the edges of 10 and of 4
# bins tell that convention from a left-closed one; the pneumonia check feeds them.
BIN_EDGE_SCORES = np.array([0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0])
CALIBRATION_SEED = 2018


def calibration_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(what was fed, scores, correct)`` for the pneumonia calibration check: random
    over-confident detections with every edge score added, then the edge scores alone with
    alternating correct flags (left- and right-closed bins give different tables and ECEs)."""
    gen = np.random.default_rng(CALIBRATION_SEED)
    scores = np.concatenate([gen.uniform(0, 1, 250) ** 0.6, BIN_EDGE_SCORES])
    correct = gen.random(len(scores)) < scores * 0.75  # over-confident on purpose
    alternating = np.arange(len(BIN_EDGE_SCORES)) % 2 == 0
    edges = BIN_EDGE_SCORES.tolist()
    return [(f"{len(scores)} random scores (the bin edges {edges} included), "
             "correct ~ Bernoulli(0.75 x score)", scores, correct),
            (f"scores exactly on bin edges {edges}, correct {alternating.astype(int).tolist()}",
             BIN_EDGE_SCORES.copy(), alternating)]


def compare_pr(got, want: dict, fed: str) -> None:
    """A student's TP/FP/FN/precision/recall dict against the reference's (NaN == NaN)."""
    if not isinstance(got, dict):
        fail("return value", fed, "a dict", type(got).__name__)
    counts = tuple(int(got.get(k, -1)) for k in ("tp", "fp", "fn"))
    if counts != (want["tp"], want["fp"], want["fn"]):
        fail("(tp, fp, fn)", fed, (want["tp"], want["fp"], want["fn"]), counts)
    for key in ("precision", "recall"):
        g, w = float(got.get(key, -1)), want[key]
        if not (math.isclose(g, w, abs_tol=1e-6) or (math.isnan(g) and math.isnan(w))):
            fail(key, fed, w, g)


def tiny_detector(seed: int = 0, size: int = 64) -> nn.Module:
    """A small random-init detector that always predicts (box score threshold 0)."""
    torch.manual_seed(seed)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=2, pretrained=False,
                                          min_size=size, max_size=size, box_score_thresh=0.0)
    return model.eval()


def hook_count(module: nn.Module) -> int:
    """Forward and backward hooks left on ``module`` and its children."""
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in module.modules())


@recorded
def check_gradcam(cam_fn, frozen_backbone: bool = False) -> None:
    """Student Grad-CAM maps against the reference for two predicted boxes, hooks released.

    With ``frozen_backbone`` the same comparison runs a second time on a copy of the model
    whose backbone parameters have ``requires_grad=False``, as after fine-tuning the heads.
    pytorch-grad-cam 1.5.x's ``GradCAM`` does not make its input require grad (only CAMs built
    with ``compute_input_gradient=True`` do), so on such a model no gradient reaches
    ``layer4`` unless the caller's input requires grad: the CAM then fails inside
    ``get_cam_weights`` (``'NoneType' object has no attribute 'shape'``). Without the flag
    (the pneumonia check) the behaviour is the one it always had.
    """
    model = tiny_detector(seed=11)
    image = torch.full((3, 64, 64), 0.15)
    image[:, 8:30, 34:58] = 0.85
    with torch.no_grad():
        boxes = model([image])[0]["boxes"]
    if len(boxes) < 2:
        raise RuntimeError("the check's fixture model predicted fewer than 2 boxes")
    ious = torchvision.ops.box_iou(boxes[:1], boxes)[0]
    picks = [0, int(torch.argmin(ious))]
    _compare_gradcam(cam_fn, model, image, boxes, picks, "")
    if frozen_backbone:
        frozen = tiny_detector(seed=11)
        for p in frozen.backbone.parameters():
            p.requires_grad_(False)
        _compare_gradcam(cam_fn, frozen, image, boxes, picks,
                         " on a model whose backbone is frozen (requires_grad=False)")


def _compare_gradcam(cam_fn, model: nn.Module, image: torch.Tensor, boxes: torch.Tensor,
                     picks: list[int], where: str) -> None:
    for k in picks:
        box = boxes[k].clone()
        want = gradcam_reference.gradcam_for_box(model, image, box)
        try:
            got = run_without(cam_fn, GRADCAM_REFS, model, image.clone(), box.clone())
        except AssertionError:
            raise  # a tripwire, or the student's own assert
        except Exception as err:
            if not where:
                raise
            fail(f"Grad-CAM map of predicted box {k}{where}", box.tolist(),
                 f"shape {want.shape}, mean {want.mean():.4f} (does the input require grad?)",
                 f"{type(err).__name__}: {err}")
        got = np.asarray(got, dtype=np.float32)
        if hook_count(model):
            fail(f"hooks after the call{where}", f"box {k}", 0, hook_count(model))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-3):
            fail(f"Grad-CAM map of predicted box {k}{where}", box.tolist(),
                  f"shape {want.shape}, mean {want.mean():.4f}",
                  f"shape {got.shape}, mean {float(got.mean()) if got.size else 'n/a'}")

"""Grad-CAM for Faster R-CNN: the plumbing and the drawing around pytorch-grad-cam.

Setting up pytorch-grad-cam (which layer, which target, the call) is the notebook's
exercise, so that code is not here. This module prepares what goes in and draws what
comes out. What to know for the exercise (pytorch-grad-cam 1.5.x, torchvision 0.2x):

* **Layer.** Take the last stage of the backbone's convolutional body, the part before
  the FPN. Its output is one feature tensor, so GradCAM needs no ``reshape_transform``.
  (``pytorch_grad_cam.utils.reshape_transforms.fasterrcnn_reshape_transform`` exists for
  layers that return the FPN's dict of levels.)
* **Layers that fail.** ``target_layers=[model.backbone]`` raises ``AttributeError``:
  the backbone returns an ``OrderedDict`` of FPN levels, not a tensor. The FPN's last
  ``layer_blocks`` entry gives an all-zero map: ``MultiScaleRoIAlign`` pools each box from
  the level that suits its size, the coarsest level only serves boxes of about 448 px and
  up, so for lesion-sized boxes it gets no gradient.
* **Frozen weights.** If the layer and everything before it are frozen
  (``requires_grad=False``), no gradient reaches the layer, and GradCAM fails with
  ``AttributeError: 'NoneType' object has no attribute 'shape'``. An input tensor with
  ``requires_grad_(True)`` brings the gradient back.
* **Target.** ``FasterRCNNBoxScoreTarget(labels, bounding_boxes, iou_threshold=0.5)``
  scores each reference box with the IoU plus the score of the best-overlapping prediction,
  and only if that prediction has the same label and an IoU above the threshold. When no
  prediction matches (or there are no predictions), the score is a constant zero, and
  the backward pass raises ``RuntimeError: element 0 of tensors does not require grad``.
* **Call.** Use the CAM object as a context manager so its hooks are removed afterwards.
  ``use_cuda`` is gone (``TypeError``); the CAM runs on the model's device. GradCAM puts the
  model in eval mode and leaves it there. The context manager hides an ``IndexError``
  raised inside the ``with`` block: it prints a message and carries on.
* **Method.** EigenCAM ignores the target, so it draws the same map for every box. GradCAM
  uses the target's gradient, so each box gets its own map.

GradCAM returns one map per image, ``[N, H, W]``, already scaled to [0, 1] and resized to
the input image's size.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from pytorch_grad_cam.utils.image import show_cam_on_image

__all__ = ["DEFAULT_COLORMAP", "box_cam_stats", "cam_overlay", "image_to_rgb", "normalize_cam"]

# Viridis, not the library's default JET: it reads in greyscale and with colour-vision
# deficiency, and its brightness rises steadily, so "hotter" always looks brighter.
DEFAULT_COLORMAP = cv2.COLORMAP_VIRIDIS


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_to_rgb(image) -> np.ndarray:
    """Image as [3,H,W], [1,H,W], H x W or H x W x 3 -> H x W x 3 float32 RGB in [0, 1]."""
    img = _numpy(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # channels first (torch) -> channels last
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3):
        raise ValueError(
            f"image has shape {tuple(_numpy(image).shape)}; expected [3,H,W], [1,H,W], "
            "H x W or H x W x 3"
        )
    if not np.isfinite(img).all() or img.min() < 0.0 or img.max() > 1.0 + 1e-6:
        raise ValueError(
            f"image values must be finite and in [0, 1] (got min {np.nanmin(img):.3g}, "
            f"max {np.nanmax(img):.3g}); scale it first"
        )
    return np.ascontiguousarray(np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img)


def normalize_cam(cam) -> np.ndarray:
    """Scale a CAM (``H x W`` or ``[1,H,W]``) to an ``H x W`` float32 map in [0, 1]."""
    arr = _numpy(cam).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"cam has shape {arr.shape}; expected H x W or [1,H,W] (one image)")
    if not np.isfinite(arr).all():
        raise ValueError("cam contains NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0.0:
        # A flat map carries no "where": show nothing rather than divide by zero.
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def _check_cam(cam, shape: tuple[int, int]) -> np.ndarray:
    arr = _numpy(cam).astype(np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.shape != shape:
        raise ValueError(f"cam has shape {arr.shape}; expected the image's size {shape}")
    if not np.isfinite(arr).all() or arr.min() < -1e-6 or arr.max() > 1.0 + 1e-6:
        raise ValueError(
            f"cam values must be finite and in [0, 1] (got min {np.nanmin(arr):.3g}, "
            f"max {np.nanmax(arr):.3g}); pass it through normalize_cam first"
        )
    return np.clip(arr, 0.0, 1.0)


def cam_overlay(image, cam, alpha: float = 0.5, colormap: int = DEFAULT_COLORMAP) -> np.ndarray:
    """Heat map blended over the image: ``H x W x 3`` float32 in [0,1]; ``alpha`` = map weight."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is {alpha}; expected a weight in [0, 1]")
    rgb = image_to_rgb(image)
    mask = _check_cam(cam, rgb.shape[:2])
    blended = show_cam_on_image(rgb, mask, use_rgb=True, colormap=colormap,
                                image_weight=1.0 - alpha)
    return blended.astype(np.float32) / 255.0  # the library returns uint8


def _box_mask(box, shape: tuple[int, int]) -> np.ndarray:
    b = _numpy(box).astype(np.float64).reshape(-1)
    if b.size != 4 or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box is {b.tolist()}; expected [x1, y1, x2, y2] with x2 > x1, y2 > y1")
    h, w = shape
    xs, ys = np.arange(w) + 0.5, np.arange(h) + 0.5  # pixel centres
    mask = ((ys >= b[1]) & (ys <= b[3]))[:, None] & ((xs >= b[0]) & (xs <= b[2]))[None, :]
    if not mask.any():
        raise ValueError(f"box {b.tolist()} covers no pixel centre of a {h} x {w} map")
    return mask


def box_cam_stats(cam, box) -> dict[str, float]:
    """How much of a CAM falls inside a box: energy share, area share, their ratio, peak.

    ``inside_fraction`` is the share of the map's total inside the box, ``area_fraction``
    the box's share of the image, and ``concentration`` their ratio. Above 1, the map is
    denser on the box than on the image as a whole. A pixel counts as inside when its
    centre is. An all-zero map (no prediction matched the box) has no energy to place:
    the two energy figures are NaN and ``peak_in_box`` is False.
    """
    arr = _numpy(cam).astype(np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.isfinite(arr).all() or arr.min() < 0:
        raise ValueError(f"cam must be a finite, non-negative H x W map; got shape {arr.shape}")
    mask = _box_mask(box, arr.shape)
    total = arr.sum()
    area_fraction = float(mask.mean())
    inside = float(arr[mask].sum() / total) if total > 0 else float("nan")
    peak = np.unravel_index(int(np.argmax(arr)), arr.shape)
    return {
        "inside_fraction": inside,
        "area_fraction": area_fraction,
        "concentration": inside / area_fraction,
        "peak_in_box": bool(total > 0 and mask[peak]),
        "mean_inside": float(arr[mask].mean()),
        "mean_outside": float(arr[~mask].mean()) if (~mask).any() else float("nan"),
    }

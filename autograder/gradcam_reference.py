"""Reference solution of the Grad-CAM exercise (grading only: never shipped to students).

The exercise is the pytorch-grad-cam set-up for torchvision's Faster R-CNN: choose the
target layer, build a ``FasterRCNNBoxScoreTarget`` for one box, and call ``GradCAM`` as a
context manager. Hidden checks compare a student's map with ``gradcam_for_box``.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch import nn


def default_target_layer(model: nn.Module) -> nn.Module:
    """Last stage of ``model.backbone.body``: ``layer4`` for ResNet FPN backbones, the last block
    of the feature extractor for MobileNet ones."""
    body = getattr(getattr(model, "backbone", None), "body", None)
    if not isinstance(body, nn.Module):
        raise TypeError(
            f"{type(model).__name__} has no backbone.body; expected a torchvision detection "
            "model with an FPN backbone (e.g. fasterrcnn_resnet50_fpn)"
        )
    stages = list(body.children())
    if not stages:
        raise ValueError("model.backbone.body has no child modules to take a target layer from")
    # The body is an IntermediateLayerGetter cut after its last returned stage, so the
    # last child is the deepest convolutional stage that feeds the FPN.
    return stages[-1]


def _as_batch(image) -> torch.Tensor:
    x = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    x = x.detach().float()
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(
            f"image has shape {tuple(x.shape)}; expected [3,H,W], [1,H,W], H x W or [1,3,H,W]"
        )
    return x.expand(3, -1, -1)[None].contiguous()  # the detector normalises 3 channels


def gradcam_for_box(
    model: nn.Module,
    image,
    box,
    label: int = 1,
    target_layer: nn.Module | None = None,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Grad-CAM of ``model`` for one box on one image: ``H x W`` float32 map in [0, 1].

    ``image`` is ``[3,H,W]`` (or grey ``[1,H,W]`` / ``H x W``) in [0, 1]. ``box`` is
    ``[x1, y1, x2, y2]`` in that image's pixels. The map explains the prediction of class
    ``label`` that best overlaps ``box``. If no prediction of that label overlaps it with an IoU
    above ``iou_threshold``, or the model predicts nothing, the model has nothing to explain
    for that box and the map is all zeros. The same holds when the layer's gradient is
    all zero. Runs on the model's device. The model comes back in the train/eval mode it had,
    with its parameter gradients cleared.
    """
    b = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(-1)
    if b.numel() != 4 or not torch.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box is {b.tolist()}; expected [x1, y1, x2, y2] with x2 > x1, y2 > y1")
    layer = default_target_layer(model) if target_layer is None else target_layer
    device = next(model.parameters()).device
    # A grad-carrying input keeps gradients flowing to the layer even when the
    # backbone's weights are frozen (requires_grad=False), as in fine-tuning set-ups.
    x = _as_batch(image).to(device).requires_grad_(True)
    targets = [FasterRCNNBoxScoreTarget(labels=[int(label)], bounding_boxes=[b],
                                        iou_threshold=iou_threshold)]
    was_training = model.training
    model.eval()
    cam_map = None
    try:
        with torch.enable_grad(), GradCAM(model=model, target_layers=[layer]) as cam:
            try:
                cam_map = cam(input_tensor=x, targets=targets)[0]
            except RuntimeError:
                # No match -> the target's score is a constant without a graph, and backward
                # refuses it. Anything else is a real error.
                outputs = getattr(cam, "outputs", None)
                if outputs is None or float(targets[0](outputs[0])) != 0.0:
                    raise
                cam_map = np.zeros(x.shape[-2:], dtype=np.float32)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if cam_map is None:  # the CAM's __exit__ swallows IndexError; do not return garbage
        raise RuntimeError("GradCAM failed inside its context manager (IndexError, see above)")
    return np.asarray(cam_map, dtype=np.float32)

"""Faster R-CNN detectors for the course: builders, head replacement, offline-safe weights.

Four architectures, all torchvision's ``FasterRCNN`` with the standard box predictor
(``model.roi_heads.box_predictor`` is a ``FastRCNNPredictor``):

* ``fasterrcnn_resnet50_fpn_v2``          - assignment 1 (pneumonia), full profile
* ``fasterrcnn_resnet50_fpn``             - assignment 2 (C-spine), full profile
* ``fasterrcnn_mobilenet_v3_large_320_fpn`` - a lighter COCO-pretrained alternative
* ``fasterrcnn_small``                    - a small CPU detector for the smoke and grade
  profiles (always random init; see ``small_backbone``)

Two choices are made on purpose:

* **Input size.** ``FasterRCNN`` resizes every image so its short side is ``min_size``
  (torchvision's default is 800). A 256 px slice would be upsampled to 800 px, about 7x the
  work for no new information, so the sizes default to the profile's ``image_size``.
* **Weights.** COCO weights are the transfer-learning start: the 91-class COCO model is
  built, then its head is replaced by one for our classes. Only the ``full`` profile may
  download them; ``smoke`` and ``grade`` use a cached copy or random init, without trying
  the network first.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.resnet import BasicBlock
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation

from helpers.env import config, profile

__all__ = ["ARCHS", "COCO_CLASSES", "SMALL", "build_detector", "count_parameters", "replace_head",
           "small_backbone", "weights_cache_path", "WeightsUnavailableError"]

SMALL = "fasterrcnn_small"
_TORCHVISION = {
    "fasterrcnn_resnet50_fpn_v2": (detection.fasterrcnn_resnet50_fpn_v2,
                                   detection.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1),
    "fasterrcnn_resnet50_fpn": (detection.fasterrcnn_resnet50_fpn,
                                detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1),
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        detection.fasterrcnn_mobilenet_v3_large_320_fpn,
        detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1),
}
ARCHS = (*_TORCHVISION, SMALL)
COCO_CLASSES = 91  # torchvision's COCO models: 90 categories (with gaps) + background


class WeightsUnavailableError(RuntimeError):
    """COCO weights were asked for explicitly but cannot be had in this profile."""


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")


def weights_cache_path(arch: str) -> Path:
    """Where torch's hub cache keeps (or would keep) the COCO weights of ``arch``."""
    _check_arch(arch)
    if arch == SMALL:
        raise ValueError(f"{SMALL} has no pretrained weights; it is always randomly initialised")
    url = _TORCHVISION[arch][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _banner(lines: list[str]) -> None:
    rule = "=" * 78
    print("\n".join([rule, *(f"  {line}" for line in lines), rule]))


def _coco_weights(arch: str, pretrained: bool | str):
    """The COCO weights enum to try for ``arch``, or None for random init (with a banner)."""
    if pretrained is False or arch == SMALL:
        return None
    cached = weights_cache_path(arch)
    prof = profile()
    if cached.exists() or prof == "full":  # only the full profile may download
        return _TORCHVISION[arch][1]
    # The Network contract: smoke and grade never download, and make no failed attempt.
    if pretrained is True:
        raise WeightsUnavailableError(
            f"{arch}: COCO weights are not in torch's cache ({cached}) and the '{prof}' "
            "profile never downloads; copy the file there or set COURSE_PROFILE=full")
    _banner([f"{arch}: random init (profile '{prof}' never downloads weights).",
             "Expected in smoke/grade runs: they test the code, not the model."])
    return None


def _fallback_banner(arch: str, err: Exception) -> None:
    cached = weights_cache_path(arch)
    _banner([f"WARNING: {arch} COCO weights could not be loaded ({type(err).__name__}: {err})",
             "Training starts from RANDOM weights: with the full profile's few epochs the",
             "detector will be POOR. Check the internet connection, or put the file",
             f"{cached.name} into {cached.parent}, and rebuild the model."])


# ------------------------------------------------------------------ the small CPU preset


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


def small_backbone(widths: tuple[int, ...] = (16, 32, 64, 128, 128),
                   fpn_channels: int = 64) -> BackboneWithFPN:
    """A tiny ResNet-style body (stride 32) with an FPN on strides 8, 16 and 32.

    GroupNorm instead of BatchNorm: from random init, with batches of 2-4 images, batch
    statistics are noisy, and BatchNorm's running statistics would also drift during a
    validation-loss pass in train mode. GroupNorm has no running statistics: train and
    eval mode compute the same thing, so small batches are no trap.
    """
    stem, *stages = widths
    layers: list[tuple[str, nn.Module]] = [
        ("stem", Conv2dNormActivation(3, stem, 3, stride=2, norm_layer=_group_norm))]
    cin = stem
    for i, cout in enumerate(stages, start=1):
        down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), _group_norm(cout))
        layers.append((f"layer{i}", BasicBlock(cin, cout, stride=2, downsample=down,
                                               norm_layer=_group_norm)))
        cin = cout
    body = nn.Sequential(OrderedDict(layers))
    # torchvision's ResNet init (torchvision/models/resnet.py, ResNet.__init__): He-normal
    # convolutions scaled for ReLU. PyTorch's default conv init (kaiming_uniform, a=sqrt(5))
    # starts each layer with 3-6x less variance; with it, one C-spine smoke run in four
    # stalled (test AP50 0.14-0.40, always the same run seeds). With this init, 12 of 12
    # runs reached 0.70-0.93 (bench/README.md, "Small backbone init").
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    # layer2..layer4 sit at strides 8, 16 and 32; a max-pool adds stride 64 ("pool").
    names = [f"layer{i}" for i in range(len(stages) - 2, len(stages) + 1)]
    return BackboneWithFPN(
        body,
        return_layers={name: str(k) for k, name in enumerate(names)},
        in_channels_list=list(widths[-3:]),
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def _small_detector(num_classes: int, min_size: int, max_size: int, **kwargs) -> FasterRCNN:
    backbone = small_backbone()
    # One anchor size per level, 16 px at stride 8 up to 128 px at stride 64: C-spine
    # fracture boxes are ~10-40 px and pneumonia opacities ~25-120 px at 256 px.
    anchors = AnchorGenerator(sizes=((16,), (32,), (64,), (128,)),
                              aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    # One sample per RoIAlign bin, not 2x2: RoIAlign's backward pass took a fifth of a CPU
    # training step (bench/README.md, "Small backbone init"). A 10-40 px fracture box spans
    # 1-5 feature pixels at stride 8, so its 7x7 bins are smaller than a pixel anyway.
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=1)
    size = backbone.out_channels * 7 * 7
    options = dict(
        # Fewer proposals and sampled RoIs than the COCO defaults (2000, 512): a few lesions
        # per image need no more, and the box head's cost scales with them on a CPU.
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=150,
        box_batch_size_per_image=32,
    )
    options.update(kwargs)
    return FasterRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(size, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        **options,
    )


# ------------------------------------------------------------------ public builders


def replace_head(model: FasterRCNN, num_classes: int) -> FasterRCNN:
    """Swap the box predictor for a new one with ``num_classes`` outputs (background included)."""
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}; expected >= 2 (background + lesion)")
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes)
    return model


def build_detector(
    arch: str,
    num_classes: int = 2,
    pretrained: bool | str = "auto",
    min_size: int | None = None,
    max_size: int | None = None,
    **kwargs,
) -> FasterRCNN:
    """Build a Faster R-CNN (``ARCHS``) for ``num_classes`` classes, background included.

    ``pretrained``: ``"auto"`` loads COCO weights when cached, or (``full`` profile only)
    downloadable, else falls back to random init with a banner; ``True`` insists on them
    (``WeightsUnavailableError`` otherwise); ``False`` is random init. ``min_size`` and
    ``max_size`` default to the profile's ``image_size``; other keyword arguments go to
    ``FasterRCNN`` (e.g. ``box_score_thresh``).
    """
    _check_arch(arch)
    if pretrained not in ("auto", True, False):
        raise ValueError(f"pretrained={pretrained!r}; expected 'auto', True or False")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}; expected >= 2 (background + lesion)")
    size = config().image_size
    min_size = size if min_size is None else min_size
    max_size = max(size, min_size) if max_size is None else max_size
    if arch == SMALL:
        return _small_detector(num_classes, min_size, max_size, **kwargs)
    builder: Callable[..., FasterRCNN] = _TORCHVISION[arch][0]
    weights = _coco_weights(arch, pretrained)
    if weights is not None:
        try:
            # The COCO model has a 91-class head: load it whole, then give it our own head.
            model = builder(weights=weights, weights_backbone=None, min_size=min_size,
                            max_size=max_size, **kwargs)
        except (OSError, RuntimeError) as err:  # no network (URLError), corrupt file, ...
            if pretrained is True:
                raise WeightsUnavailableError(f"{arch}: COCO weights unavailable: {err}") from err
            _fallback_banner(arch, err)
        else:
            return model if num_classes == COCO_CLASSES else replace_head(model, num_classes)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes,
                   min_size=min_size, max_size=max_size, **kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

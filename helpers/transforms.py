"""Albumentations 2.x pipelines for detection: the boxes move with the image.

Images go in as float32 ``H x W x 3`` in [0,1] and come out as float32 ``[3,H,W]``
tensors, still in [0,1]. There is deliberately no ``Normalize`` here: torchvision's
detectors normalise with the ImageNet mean and std inside the model, so normalising
in the pipeline too would do it twice (an old version of this course did).
Boxes are ``pascal_voc`` (``[x1,y1,x2,y2]`` pixels); the label field comes back as floats,
which a Dataset casts back to int64.
"""

from __future__ import annotations

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

__all__ = ["eval_transforms", "train_transforms"]

def _bbox_params() -> A.BboxParams:
    # clip: a box nudged past the border is trimmed, not an error; boxes left with less
    # than a third of their area, or squashed to nothing, are dropped.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        clip=True,
        min_visibility=0.3,
        min_width=1,
        min_height=1,
        filter_invalid_bboxes=True,
    )


def train_transforms(size: int, seed: int | None = None) -> A.Compose:
    """Resize to ``size``x``size``, then flip, small affine jitter and brightness/contrast."""
    return A.Compose(
        [
            A.Resize(size, size, area_for_downscale="image"),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                rotate=(-7, 7),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=0.5,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
            ToTensorV2(),
        ],
        bbox_params=_bbox_params(),
        strict=True,  # a misspelt or 1.x-only argument raises instead of being ignored
        seed=seed,
    )


def eval_transforms(size: int) -> A.Compose:
    """Resize only: evaluation must see the images as they are."""
    return A.Compose(
        [A.Resize(size, size, area_for_downscale="image"), ToTensorV2()],
        bbox_params=_bbox_params(),
        strict=True,
    )

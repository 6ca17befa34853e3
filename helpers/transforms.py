"""Albumentations 2.x pipelines for detection: the boxes move with the image.

Images go in as float32 ``H x W x 3`` in [0,1] and come out as float32 ``[3,H,W]``
tensors, still in [0,1]. There is deliberately no ``Normalize`` here: torchvision's
detectors normalise with the ImageNet mean and std inside the model, so normalising
in the pipeline too would do it twice (an old version of this course did).
Boxes are ``pascal_voc`` (``[x1,y1,x2,y2]`` pixels); the label field comes back as floats,
which a Dataset casts back to int64.

Workers: a ``Compose`` keeps its own random generators (seeded by ``seed=``, or from the
operating system when ``seed`` is None). A ``DataLoader`` with workers forks copies of the
Dataset, and with it of those generators, so every worker would replay the same augmentation
stream, and every epoch the same streams again. Pass ``worker_init_fn=seed_worker`` to give
each worker of each epoch its own stream, drawn from the loader's seed.
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

__all__ = ["eval_transforms", "seed_worker", "train_transforms"]


def seed_worker(worker_id: int) -> None:
    """``DataLoader(..., worker_init_fn=seed_worker)``: reseed the worker's augmentations.

    Uses the seed PyTorch gives the worker (the loader's base seed, drawn anew for each
    epoch from its ``generator`` or the global torch seed, plus ``worker_id``), so two workers
    differ, two epochs differ, and the same seed reproduces the run. Reseeds numpy's and
    Python's global generators and every albumentations pipeline held as an attribute of the
    Dataset (e.g. ``self.transform``), also through wrappers such as ``Subset``
    (``.dataset``). Does nothing outside a worker process.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    seed = int(info.seed) % 2**32
    np.random.seed(seed)
    random.seed(seed)
    dataset, seen = info.dataset, set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        for value in vars(dataset).values() if hasattr(dataset, "__dict__") else ():
            if isinstance(value, A.BaseCompose):
                value.set_random_seed(seed)
        dataset = getattr(dataset, "dataset", None)


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

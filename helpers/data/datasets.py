"""What every detection DataLoader needs: ``collate``.

torchvision's detectors take a list of images and a list of target dicts (images may differ
in size and in box count), so the default collate, which stacks, does not fit. The Datasets
themselves are the notebooks' exercises and are not part of ``helpers``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["collate"]


def collate(batch: Sequence[tuple]) -> tuple[list, list]:
    """Keep images and targets as lists: images differ in box count (and maybe in size)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)

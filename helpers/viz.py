"""Drawing: images with their boxes, and grids of samples.

Ground truth is green and solid, predictions red and dashed. The green and red are the
Okabe-Ito colour-blind-safe "bluish green" and "vermillion", and the line styles differ
too, so a figure survives greyscale printing and colour-vision deficiency.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle

GT_STYLE = {"edgecolor": "#009E73", "linestyle": "-", "linewidth": 1.8}  # bluish green, solid
PRED_STYLE = {"edgecolor": "#D55E00", "linestyle": "--", "linewidth": 1.5}  # vermillion, dashed


def _as_hw(image) -> np.ndarray:
    img = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3):  # [C,H,W] -> [H,W]
        img = img[0]
    elif img.ndim == 3:
        img = img[..., 0]
    return img


def draw_boxes(ax, image, boxes=None, preds=None, scores=None, title: str | None = None) -> None:
    """Show a grayscale image with ground-truth boxes (solid) and predicted boxes (dashed)."""
    ax.imshow(_as_hw(image), cmap="gray", vmin=0, vmax=1)
    for b in np.asarray(boxes if boxes is not None else []).reshape(-1, 4):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **GT_STYLE))
    preds = np.asarray(preds if preds is not None else []).reshape(-1, 4)
    for i, b in enumerate(preds):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **PRED_STYLE))
        if scores is not None:
            ax.text(b[0], b[1] - 2, f"{float(scores[i]):.2f}", color=PRED_STYLE["edgecolor"],
                    fontsize=7, va="bottom")
    if title:
        ax.set_title(title, fontsize=8)
    ax.axis("off")


def show_samples(samples: Sequence[tuple], ncols: int = 4, title: str | None = None):
    """Grid of ``(image, target)`` samples with their ground-truth boxes; returns the figure."""
    n = len(samples)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, target) in zip(axes.flat, samples, strict=False):
        boxes = target["boxes"]
        draw_boxes(ax, image, boxes, title=f"id {int(target['image_id'])}: {len(boxes)} box(es)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

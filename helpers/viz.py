"""Drawing: boxes on images, grids, box statistics, training and metric plots, CAM overlays.

Ground truth is green and solid, predictions red and dashed. The green and red are the
Okabe-Ito colour-blind-safe "bluish green" and "vermillion". The line styles differ too,
so a figure survives greyscale printing and colour-vision deficiency. Every other series
uses the same Okabe-Ito palette, and heat maps use viridis. Each function returns the
matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from helpers.metrics import best_f1_threshold

__all__ = ["GT_STYLE", "OKABE_ITO", "PRED_STYLE", "SERIES", "box_stats_figure", "cam_triptych",
           "draw_boxes", "draw_predictions", "plot_loss_curves", "plot_recall_by_size",
           "plot_reliability_diagram", "plot_score_histogram", "plot_threshold_sweep",
           "show_predictions", "show_samples"]

GT_STYLE = {"edgecolor": "#009E73", "linestyle": "-", "linewidth": 1.8}  # bluish green, solid
PRED_STYLE = {"edgecolor": "#D55E00", "linestyle": "--", "linewidth": 1.5}  # vermillion, dashed
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
             "purple": "#CC79A7", "sky": "#56B4E9", "yellow": "#F0E442", "black": "#000000"}
SERIES = ["blue", "orange", "green", "vermillion", "purple", "sky", "black"]


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_hw(image) -> np.ndarray:
    img = _np(image)
    if img.ndim == 3 and img.shape[0] in (1, 3):  # [C,H,W] -> [H,W]
        img = img[0]
    elif img.ndim == 3:
        img = img[..., 0]
    return img


def _legend_handles() -> list[Line2D]:
    return [Line2D([], [], color=GT_STYLE["edgecolor"], ls="-", label="ground truth"),
            Line2D([], [], color=PRED_STYLE["edgecolor"], ls="--", label="prediction")]


def _add_boxes(ax: Axes, boxes=None, preds=None, scores=None, labels=None,
               class_names: Mapping[int, str] | None = None) -> None:
    for b in _np(boxes if boxes is not None else []).reshape(-1, 4):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **GT_STYLE))
    for i, b in enumerate(_np(preds if preds is not None else []).reshape(-1, 4)):
        ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **PRED_STYLE))
        text = []
        if labels is not None:
            lab = int(_np(labels).reshape(-1)[i])
            text.append((class_names or {}).get(lab, str(lab)))
        if scores is not None:
            text.append(f"{float(_np(scores).reshape(-1)[i]):.2f}")
        if text:
            ax.text(b[0], b[1] - 2, " ".join(text), color=PRED_STYLE["edgecolor"], fontsize=7,
                    va="bottom", bbox={"facecolor": "white", "alpha": 0.7, "pad": 0.5,
                                       "edgecolor": "none"})


def draw_boxes(ax: Axes, image, boxes=None, preds=None, scores=None, title: str | None = None,
               labels=None, class_names: Mapping[int, str] | None = None) -> Figure:
    """Show a grayscale image with ground-truth boxes (solid) and predicted boxes (dashed)."""
    ax.imshow(_as_hw(image), cmap="gray", vmin=0, vmax=1)
    _add_boxes(ax, boxes, preds, scores, labels, class_names)
    if title:
        ax.set_title(title, fontsize=8)
    ax.axis("off")
    return ax.figure


def draw_predictions(ax: Axes, image, pred: Mapping, target: Mapping | None = None,
                     score_thresh: float = 0.5, class_names: Mapping[int, str] | None = None,
                     title: str | None = None) -> Figure:
    """Draw one image's predictions scoring >= ``score_thresh`` (label + score) and its GT."""
    scores = _np(pred["scores"]).reshape(-1)
    keep = scores >= score_thresh
    labels = pred.get("labels")
    draw_boxes(ax, image, None if target is None else target["boxes"],
               _np(pred["boxes"]).reshape(-1, 4)[keep], scores[keep], title,
               labels=None if labels is None else _np(labels).reshape(-1)[keep],
               class_names=class_names)
    return ax.figure


def show_samples(samples: Sequence[tuple], ncols: int = 4, title: str | None = None) -> Figure:
    """Grid of ``(image, target)`` samples with their ground-truth boxes; returns the figure."""
    fig, axes = _grid(len(samples), ncols)
    for ax, (image, target) in zip(axes.flat, samples, strict=False):
        boxes = target["boxes"]
        draw_boxes(ax, image, boxes, title=f"id {int(target['image_id'])}: {len(boxes)} box(es)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _grid(n: int, ncols: int, size: float = 2.6):
    if ncols < 1:
        raise ValueError(f"ncols is {ncols}; expected at least 1")
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def show_predictions(images: Sequence, preds: Sequence[Mapping],
                     targets: Sequence[Mapping] | None = None, ncols: int = 4,
                     score_thresh: float = 0.5, class_names: Mapping[int, str] | None = None,
                     title: str | None = None) -> Figure:
    """Grid of images with ground truth (solid green) and predictions >= ``score_thresh``."""
    if len(preds) != len(images) or (targets is not None and len(targets) != len(images)):
        raise ValueError(f"got {len(images)} images, {len(preds)} predictions and "
                         f"{'no' if targets is None else len(targets)} targets; expected one each")
    fig, axes = _grid(len(images), ncols)
    for i, (ax, image, pred) in enumerate(zip(axes.flat, images, preds, strict=False)):
        target = None if targets is None else targets[i]
        n_gt = 0 if target is None else len(target["boxes"])
        n_pred = int((_np(pred["scores"]) >= score_thresh).sum())
        draw_predictions(ax, image, pred, target, score_thresh, class_names,
                         title=f"{n_gt} true, {n_pred} predicted")
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title or f"Predictions with score >= {score_thresh:g}: "
                 "does each dashed box sit on a solid one?", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _widths_heights(boxes) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(boxes, pd.DataFrame):
        if {"x1", "y1", "x2", "y2"} <= set(boxes.columns):
            arr = boxes[["x1", "y1", "x2", "y2"]].to_numpy(float)
        elif {"width", "height"} <= set(boxes.columns):
            wh = boxes[["width", "height"]].dropna().to_numpy(float)
            return wh[:, 0], wh[:, 1]
        else:
            raise ValueError(f"labels table has columns {list(boxes.columns)}; expected "
                             "x1,y1,x2,y2 or width,height")
    elif isinstance(boxes, Sequence) and boxes and isinstance(boxes[0], Mapping):
        arr = np.concatenate([_np(t["boxes"]).reshape(-1, 4) for t in boxes])
    else:
        arr = _np(boxes).astype(float).reshape(-1, 4)
    arr = arr[~np.isnan(arr).any(axis=1)]  # negatives' rows carry no box
    return arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]


def box_stats_figure(boxes, bins: int = 20, title: str | None = None) -> Figure:
    """Histograms of box size (sqrt of area) and aspect ratio, from a labels table or boxes."""
    w, h = _widths_heights(boxes)
    if len(w) == 0:
        raise ValueError("no boxes to summarise (all rows are negatives or the input is empty)")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.hist(np.sqrt(w * h), bins=bins, color=OKABE_ITO["blue"], edgecolor="white")
    for edge, name in ((32, "small | medium"), (96, "medium | large")):
        ax1.axvline(edge, color=OKABE_ITO["black"], ls=":", lw=1)
        ax1.text(edge, 0.97, name, transform=ax1.get_xaxis_transform(), fontsize=7,
                 rotation=90, ha="right", va="top")
    ax1.set(xlabel="box size: sqrt(area) in pixels", ylabel="number of boxes",
            title="Box sizes (dotted: COCO size limits)")
    ratio = w / h
    # Log bins: a 2:1 box and a 1:2 box sit at the same distance from square.
    span = max(2.0, float(np.max(np.maximum(ratio, 1 / ratio))))
    ax2.hist(ratio, bins=np.geomspace(1 / span, span, bins + 1), color=OKABE_ITO["orange"],
             edgecolor="white")
    ax2.set_xscale("log")
    ax2.axvline(1.0, color=OKABE_ITO["black"], ls=":", lw=1)
    ax2.set(xlabel="aspect ratio width / height (log scale)", ylabel="number of boxes",
            title="Aspect ratios (dotted: square)")
    fig.suptitle(title or f"{len(w)} boxes: which sizes and shapes must the anchors cover?",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _frame(data, required: Sequence[str], what: str) -> pd.DataFrame:
    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; expected {list(required)}, "
                         f"found {list(df.columns)}")
    return df


def plot_loss_curves(history, title: str | None = None) -> Figure:
    """Training (and validation) loss per epoch, the loss components if logged, the best epoch."""
    df = _frame(history, [], "history")
    if df.empty:
        raise ValueError("history is empty; expected one row (dict) per epoch")
    train = next((c for c in ("train_loss", "loss") if c in df.columns), None)
    if train is None:
        raise ValueError(f"history has columns {list(df.columns)}; expected train_loss or loss")
    epochs = df["epoch"].to_numpy() if "epoch" in df.columns else np.arange(1, len(df) + 1)
    parts = [c for c in df.columns if "loss" in c and c not in (train, "val_loss")
             and pd.api.types.is_numeric_dtype(df[c])]
    fig, axes = plt.subplots(1, 2 if parts else 1, figsize=(11.5 if parts else 5.5, 3.5),
                             squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, df[train], marker="o", color=OKABE_ITO["blue"], label="train")
    best_col = train
    if "val_loss" in df.columns and df["val_loss"].notna().any():
        ax.plot(epochs, df["val_loss"], marker="s", ls="--", color=OKABE_ITO["orange"],
                label="validation")
        best_col = "val_loss"
    handles = []
    if "val_score" in df.columns and df["val_score"].notna().any():
        # fit(score_fn=...) picked its best epoch by this score (higher is better).
        right = ax.twinx()
        handles = right.plot(epochs, df["val_score"], marker="^", ls="-.",
                             color=OKABE_ITO["green"], label="validation score (right)")
        right.set_ylabel("score")
        best = int(np.nanargmax(df["val_score"].to_numpy(float)))
    else:
        best = int(np.nanargmin(df[best_col].to_numpy(float)))
    ax.axvline(epochs[best], color=OKABE_ITO["black"], ls=":", lw=1,
               label=f"best epoch {epochs[best]}")
    ax.set(xlabel="epoch", ylabel="loss", title="Total loss: does validation follow training?")
    ax.legend(handles=ax.get_legend_handles_labels()[0] + handles, fontsize=8)
    if parts:
        # One colour per component; training solid, validation dashed (fit's train_/val_).
        names = list(dict.fromkeys(c.removeprefix("train_").removeprefix("val_") for c in parts))
        for col in parts:
            i = names.index(col.removeprefix("train_").removeprefix("val_"))
            axes[0, 1].plot(epochs, df[col], marker=".", label=col,
                            ls="--" if col.startswith("val_") else "-",
                            color=OKABE_ITO[SERIES[i % len(SERIES)]])
        axes[0, 1].set(xlabel="epoch", ylabel="loss",
                       title="Components (dashed: validation)")
        axes[0, 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_recall_by_size(df, title: str | None = None) -> Figure:
    """Bars of recall per box-size bin, each labelled with its number of true boxes."""
    df = _frame(df, ["bin", "n_gt", "recall"], "recall-by-size table")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    x = np.arange(len(df))
    ax.bar(x, df["recall"].fillna(0).to_numpy(float), color=OKABE_ITO["blue"])
    for xi, (r, n) in enumerate(zip(df["recall"], df["n_gt"], strict=True)):
        ax.text(xi, (0 if pd.isna(r) else r) + 0.02, f"n={int(n)}", ha="center", fontsize=8)
    ax.set_xticks(x, [str(b) for b in df["bin"]])
    ax.set(xlabel="true box size", ylabel="recall", ylim=(0, 1.1),
           title=title or "Recall by box size: which lesions does the model miss?")
    fig.tight_layout()
    return fig


def plot_score_histogram(scores, is_tp, bins: int = 20, title: str | None = None) -> Figure:
    """Score histograms of true and false positives: do their scores separate?"""
    scores, is_tp = _np(scores).astype(float).reshape(-1), _np(is_tp).astype(bool).reshape(-1)
    if scores.shape != is_tp.shape:
        raise ValueError(f"{scores.size} scores but {is_tp.size} TP flags; expected one each")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    edges = np.linspace(0, 1, bins + 1)
    ax.hist(scores[is_tp], bins=edges, histtype="stepfilled", alpha=0.6,
            color=OKABE_ITO["blue"], label=f"true positives ({int(is_tp.sum())})")
    ax.hist(scores[~is_tp], bins=edges, histtype="step", lw=2, ls="--",
            color=OKABE_ITO["orange"], label=f"false positives ({int((~is_tp).sum())})")
    ax.set(xlabel="detection score", ylabel="number of detections",
           title=title or "Scores: where do false positives stop?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_reliability_diagram(bins_df, ece: float | None = None, title: str | None = None) -> Figure:
    """Reliability diagram: fraction correct vs mean score per bin, the diagonal, counts."""
    df = _frame(bins_df, ["bin_lower", "bin_upper", "confidence", "accuracy", "count"],
                "reliability table")
    df = df[df["count"] > 0]
    lo, width = df["bin_lower"].to_numpy(float), (df["bin_upper"] - df["bin_lower"]).to_numpy()
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(4.8, 5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.bar(lo, df["accuracy"], width=width, align="edge", color=OKABE_ITO["blue"],
           edgecolor="white", label="fraction correct")
    ax.bar(lo, df["confidence"] - df["accuracy"], bottom=df["accuracy"], width=width,
           align="edge", fill=False, hatch="//", edgecolor=OKABE_ITO["vermillion"], label="gap")
    ax.plot([0, 1], [0, 1], ls="--", color=OKABE_ITO["black"], label="perfect calibration")
    ax.set(ylabel="fraction correct", xlim=(0, 1), ylim=(0, 1))
    ax.set_title(title or "Reliability: below the diagonal = over-confident"
                 + ("" if ece is None else f" (ECE {ece:.3f})"), fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    axc.bar(lo, df["count"], width=width, align="edge", color=OKABE_ITO["sky"],
            edgecolor="white")
    axc.set(xlabel="detection score (confidence bin)", ylabel="detections")
    fig.tight_layout()
    return fig


def plot_threshold_sweep(df, title: str | None = None) -> Figure:
    """Precision, recall and F1 against the score threshold, with the best-F1 threshold."""
    df = _frame(df, ["threshold", "precision", "recall"], "threshold sweep").copy()
    if "f1" not in df.columns:
        p, r = df["precision"], df["recall"]
        df["f1"] = (2 * p * r / (p + r)).fillna(0)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col, color, ls in (("precision", "blue", "-"), ("recall", "orange", "--"),
                           ("f1", "green", "-.")):
        ax.plot(df["threshold"], df[col], ls=ls, color=OKABE_ITO[color], label=col)
    best = best_f1_threshold(df, default=None)  # None when no threshold finds a lesion
    if best is not None:
        best_f1 = float(df.loc[df["threshold"] == best, "f1"].iloc[0])
        ax.axvline(best, color=OKABE_ITO["black"], ls=":", lw=1,
                   label=f"best F1 {best_f1:.2f} at {best:.2f}")
    ax.set(xlabel="score threshold", ylabel="value", ylim=(0, 1.05),
           title=title or "Threshold sweep: what does a stricter threshold cost?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cam_triptych(image, cam, box=None, pred_box=None, title: str | None = None,
                 alpha: float = 0.5) -> Figure:
    """Image with its boxes | Grad-CAM heat map | overlay: does the map sit on the box?"""
    from helpers.explain import cam_overlay  # imported here: pytorch-grad-cam loads slowly

    overlay = cam_overlay(image, cam, alpha=alpha)
    fig, axes = plt.subplots(1, 3, figsize=(9.5, 3.4))
    draw_boxes(axes[0], image, box, pred_box, title="image")
    im = axes[1].imshow(_np(cam).reshape(overlay.shape[:2]), cmap="viridis", vmin=0, vmax=1)
    axes[1].set_title("Grad-CAM (bright = strong)", fontsize=8)
    axes[1].axis("off")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
    axes[2].imshow(overlay)
    _add_boxes(axes[2], box, pred_box)
    axes[2].set_title("overlay", fontsize=8)
    axes[2].axis("off")
    fig.legend(handles=_legend_handles(), loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(title or "Does the heat sit on the lesion or somewhere else?", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig

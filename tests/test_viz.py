"""Figures render headless, return a Figure, and draw what they claim to draw."""

from __future__ import annotations

from io import BytesIO

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from helpers import viz  # noqa: E402
from helpers.explain import cam_overlay  # noqa: E402

GREEN, RED = to_rgba("#009E73"), to_rgba("#D55E00")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _renders(fig) -> None:
    assert isinstance(fig, Figure)
    buf = BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def _rects(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill()]


def _is_gt(r: Rectangle) -> bool:
    return r.get_edgecolor() == GREEN and r.get_linestyle() == "-"


def _is_pred(r: Rectangle) -> bool:
    return r.get_edgecolor() == RED and r.get_linestyle() == "--"


def _sample(seed: int, n_gt: int = 1):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(3, 64, 64, generator=g) * 0.3
    gt = torch.tensor([[10.0, 12.0, 30.0, 34.0], [40.0, 40.0, 60.0, 58.0]])[:n_gt]
    pred = {"boxes": torch.tensor([[11.0, 12.0, 31.0, 33.0], [0.0, 0.0, 20.0, 20.0],
                                   [35.0, 38.0, 62.0, 60.0]]),
            "scores": torch.tensor([0.9, 0.3, 0.6]), "labels": torch.tensor([1, 1, 1])}
    return img, {"boxes": gt, "labels": torch.ones(n_gt, dtype=torch.int64)}, pred


def test_draw_boxes_styles_and_text():
    img, target, pred = _sample(0, n_gt=2)
    fig, ax = plt.subplots()
    out = viz.draw_boxes(ax, img, target["boxes"], pred["boxes"], pred["scores"],
                         labels=pred["labels"], class_names={1: "opacity"})
    _renders(out)
    rects = _rects(ax)
    assert sum(map(_is_gt, rects)) == 2 and sum(map(_is_pred, rects)) == 3 and len(rects) == 5
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["opacity 0.90", "opacity 0.30", "opacity 0.60"]


def test_draw_predictions_keeps_scores_above_threshold():
    img, target, pred = _sample(1)
    fig, ax = plt.subplots()
    viz.draw_predictions(ax, img, pred, target, score_thresh=0.5)
    rects = _rects(ax)
    assert sum(map(_is_gt, rects)) == 1 and sum(map(_is_pred, rects)) == 2
    assert sorted(t.get_text() for t in ax.texts) == ["1 0.60", "1 0.90"]


def test_show_predictions_grid_counts_boxes():
    samples = [_sample(i, n_gt=1 + i % 2) for i in range(3)]
    images, targets, preds = zip(*samples, strict=True)
    fig = viz.show_predictions(images, preds, targets, ncols=2, score_thresh=0.5)
    _renders(fig)
    rects = [r for ax in fig.axes for r in _rects(ax)]
    n_gt = sum(len(t["boxes"]) for t in targets)
    n_pred = sum(int((p["scores"] >= 0.5).sum()) for p in preds)
    assert sum(map(_is_gt, rects)) == n_gt and sum(map(_is_pred, rects)) == n_pred
    assert len(rects) == n_gt + n_pred
    assert len(fig.axes) == 4  # 2 x 2 grid, last one blank
    with pytest.raises(ValueError, match="one each"):
        viz.show_predictions(images, preds[:2], targets)


def test_show_samples_still_works():
    img, target, _ = _sample(0, n_gt=2)
    target["image_id"] = torch.tensor(7)
    fig = viz.show_samples([(img, target)], ncols=2, title="t")
    _renders(fig)
    assert sum(map(_is_gt, _rects(fig.axes[0]))) == 2
    assert fig.axes[0].get_title() == "id 7: 2 box(es)"


def _bar_total(ax) -> float:
    return sum(p.get_height() for p in ax.patches if isinstance(p, Rectangle))


def test_box_stats_from_labels_table_targets_and_arrays():
    labels = pd.DataFrame({"patientId": ["a", "b", "c", "d"], "x1": [0, 10, np.nan, 5],
                           "y1": [0, 10, np.nan, 5], "x2": [40, 30, np.nan, 105],
                           "y2": [20, 50, np.nan, 55]})
    fig = viz.box_stats_figure(labels, bins=5)
    _renders(fig)
    size_ax, ratio_ax = fig.axes
    assert _bar_total(size_ax) == 3 and _bar_total(ratio_ax) == 3  # the negative row is skipped
    assert "sqrt(area)" in size_ax.get_xlabel() and "width / height" in ratio_ax.get_xlabel()
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 20.0]])},
               {"boxes": torch.tensor([[0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 9.0, 3.0]])}]
    assert _bar_total(viz.box_stats_figure(targets).axes[0]) == 3
    wh = pd.DataFrame({"width": [10, 20], "height": [5, np.nan]})
    assert _bar_total(viz.box_stats_figure(wh).axes[0]) == 1
    with pytest.raises(ValueError, match="no boxes"):
        viz.box_stats_figure(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="expected x1,y1,x2,y2"):
        viz.box_stats_figure(pd.DataFrame({"a": [1]}))


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.lines]


def test_loss_curves_one_line_per_series_and_best_epoch():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": [0.9, 0.5, 0.4, 0.45][e - 1],
                "loss_classifier": 0.5 / e, "loss_box_reg": 0.3 / e, "lr": 0.01}
               for e in range(1, 5)]
    fig = viz.plot_loss_curves(history)
    _renders(fig)
    total, parts = fig.axes
    assert _labels(total) == ["train", "validation", "best epoch 3"]
    assert total.lines[2].get_xdata()[0] == 3
    assert _labels(parts) == ["loss_classifier", "loss_box_reg"]
    assert total.get_xlabel() == "epoch" and total.get_ylabel() == "loss"
    only_train = viz.plot_loss_curves(pd.DataFrame({"loss": [3.0, 1.0, 2.0]}))
    assert len(only_train.axes) == 1
    assert _labels(only_train.axes[0]) == ["train", "best epoch 2"]
    with pytest.raises(ValueError, match="train_loss or loss"):
        viz.plot_loss_curves([{"epoch": 1, "val_loss": 1.0}])


def test_loss_curves_read_fit_history():
    # helpers.engine.fit's columns: train_/val_ prefixed components, lr, seconds
    parts = ["loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"]
    history = pd.DataFrame([{"epoch": e, **{f"{s}_{p}": 0.1 * e for s in ("train", "val")
                                           for p in [*parts, "loss"]},
                             "lr": 0.01, "seconds": 1.0} for e in (1, 2)])
    history.loc[1, "val_loss"] = 0.05  # best at epoch 2
    fig = viz.plot_loss_curves(history)
    _renders(fig)
    total, comp = fig.axes
    assert _labels(total) == ["train", "validation", "best epoch 2"]
    assert sorted(_labels(comp)) == sorted(f"{s}_{p}" for s in ("train", "val") for p in parts)
    for line in comp.lines:  # validation dashed, training solid, one colour per component
        assert line.get_linestyle() == ("--" if line.get_label().startswith("val_") else "-")
    colours = {line.get_label(): line.get_color() for line in comp.lines}
    assert all(colours[f"train_{p}"] == colours[f"val_{p}"] for p in parts)
    assert len({colours[f"train_{p}"] for p in parts}) == len(parts)


def test_recall_by_size_bars():
    df = pd.DataFrame({"bin": ["small", "medium", "large"], "n_gt": [0, 4, 9],
                       "recall": [np.nan, 0.5, 0.75]})
    fig = viz.plot_recall_by_size(df)
    _renders(fig)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [0.0, 0.5, 0.75]
    assert [t.get_text() for t in ax.texts] == ["n=0", "n=4", "n=9"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["small", "medium", "large"]
    with pytest.raises(ValueError, match="recall"):
        viz.plot_recall_by_size(pd.DataFrame({"bin": [1], "n_gt": [1]}))


def test_score_histogram_splits_tp_and_fp():
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7])
    is_tp = np.array([True, True, False, False, False])
    fig = viz.plot_score_histogram(torch.as_tensor(scores), is_tp)
    _renders(fig)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["true positives (2)", "false positives (3)"]
    with pytest.raises(ValueError, match="one each"):
        viz.plot_score_histogram(scores, is_tp[:3])


def _bins() -> pd.DataFrame:
    edges = np.linspace(0, 1, 11)
    return pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:],
                         "confidence": edges[:-1] + 0.05,
                         "accuracy": np.clip(edges[:-1] - 0.1, 0, 1),
                         "count": [0, 0, 3, 5, 2, 0, 7, 8, 9, 4]})


def test_reliability_diagram_has_diagonal_and_bars_per_filled_bin():
    bins = _bins()
    fig = viz.plot_reliability_diagram(bins, ece=0.1234)
    _renders(fig)
    ax, counts = fig.axes
    diag = [line for line in ax.lines if line.get_label() == "perfect calibration"]
    assert len(diag) == 1 and list(diag[0].get_xdata()) == [0, 1] == list(diag[0].get_ydata())
    filled = bins[bins["count"] > 0]
    heights = [p.get_height() for p in ax.patches if p.get_fill()]
    np.testing.assert_allclose(heights, filled["accuracy"])
    assert [p.get_height() for p in counts.patches] == list(filled["count"])
    assert "ECE 0.123" in ax.get_title()
    with pytest.raises(ValueError, match="count"):
        viz.plot_reliability_diagram(bins.drop(columns="count"))


def test_threshold_sweep_marks_best_f1():
    t = np.linspace(0, 1, 11)
    df = pd.DataFrame({"threshold": t, "precision": 0.5 + 0.5 * t, "recall": 1 - t ** 2})
    fig = viz.plot_threshold_sweep(df)
    _renders(fig)
    ax = fig.axes[0]
    assert _labels(ax)[:3] == ["precision", "recall", "f1"]
    f1 = 2 * df.precision * df.recall / (df.precision + df.recall)
    assert ax.lines[3].get_xdata()[0] == pytest.approx(t[int(np.argmax(f1))])
    assert ax.get_xlabel() == "score threshold"


def test_cam_triptych_panels():
    img = torch.rand(1, 32, 40) * 0.5
    cam = np.zeros((32, 40), np.float32)
    cam[8:16, 10:20] = 1.0
    fig = viz.cam_triptych(img, cam, box=[10, 8, 20, 16], pred_box=[11, 8, 21, 17], title="t")
    _renders(fig)
    left, heat, overlay = fig.axes[:3]
    for ax in (left, overlay):
        rects = _rects(ax)
        assert sum(map(_is_gt, rects)) == 1 and sum(map(_is_pred, rects)) == 1
    np.testing.assert_allclose(heat.images[0].get_array(), cam)
    np.testing.assert_allclose(overlay.images[0].get_array(), cam_overlay(img, cam))
    assert len(fig.axes) == 4  # three panels and the heat map's colour bar


def _toy_detections():
    targets, preds = [], []
    for i in range(4):
        _, target, pred = _sample(i, n_gt=1 + i % 2)
        targets.append(target)
        preds.append(pred)
    return preds, targets


def test_metric_plots_accept_the_metrics_helpers_tables():
    from helpers import metrics
    preds, targets = _toy_detections()
    _renders(viz.plot_threshold_sweep(metrics.threshold_sweep(preds, targets)))
    table = metrics.recall_by_size(preds, targets)
    fig = viz.plot_recall_by_size(table)
    _renders(fig)
    assert len(fig.axes[0].patches) == len(table)


def test_calibration_plots_accept_the_calibration_helpers_output():
    from helpers import calibration
    preds, targets = _toy_detections()
    scores, is_tp = calibration.detection_confidences(preds, targets)
    bins = calibration.reliability_bins(scores, is_tp)
    ece = calibration.expected_calibration_error(scores, is_tp)
    fig = viz.plot_reliability_diagram(bins, ece=ece)
    _renders(fig)
    heights = [p.get_height() for p in fig.axes[0].patches if p.get_fill()]
    np.testing.assert_allclose(heights, bins.loc[bins["count"] > 0, "accuracy"])
    _renders(viz.plot_score_histogram(scores, is_tp))


def test_loss_curves_mark_the_best_score_when_fit_monitored_one():
    # fit(score_fn=...) adds val_score and keeps its highest epoch, not the lowest loss
    history = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [1.0, 0.8, 0.6, 0.5],
                            "val_loss": [0.3, 0.2, 0.25, 0.3],
                            "val_score": [0.1, float("nan"), 0.5, 0.4]})
    fig = viz.plot_loss_curves(history)
    _renders(fig)
    total, score = fig.axes
    assert _labels(score) == ["validation score (right)"]
    assert total.lines[-1].get_label() == "best epoch 3"
    assert total.lines[-1].get_xdata()[0] == 3
    legend = [t.get_text() for t in total.get_legend().get_texts()]
    assert legend == ["train", "validation", "best epoch 3", "validation score (right)"]

"""helpers.metrics: IoU, score-ordered matching, P/R, sweeps, COCO mAP, RSNA metric, sizes."""

from __future__ import annotations

import contextlib
import io
import math
import sys

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from helpers.metrics import (
    bootstrap_ci,
    box_iou,
    coco_map,
    image_level_report,
    match_detections,
    precision_recall,
    recall_by_size,
    rsna_metric,
    threshold_sweep,
)


def T(*boxes, labels=None):
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    lab = torch.ones(len(b), dtype=torch.int64) if labels is None else torch.tensor(labels)
    return {"boxes": b, "labels": lab}


def P(*boxes_scores, labels=None):
    d = T(*[b for b, _ in boxes_scores], labels=labels)
    d["scores"] = torch.tensor([s for _, s in boxes_scores], dtype=torch.float32)
    return d


def random_set(n_images: int, seed: int, n_labels: int = 1, size: float = 256.0):
    """Random images with 0-3 lesions and 0-12 predictions, some near the lesions."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []

    def boxes(n):
        xy = rng.uniform(0, size * 0.75, (n, 2))
        return np.c_[xy, xy + rng.uniform(4, size / 2.5, (n, 2))]

    for _ in range(n_images):
        gt, pr = boxes(rng.integers(0, 4)), boxes(rng.integers(0, 13))
        k = min(len(gt), len(pr))
        pr[:k] = gt[:k] + rng.normal(0, 6, (k, 4))
        pr[:, 2:] = np.maximum(pr[:, 2:], pr[:, :2] + 1)
        gl, pl = rng.integers(1, n_labels + 1, len(gt)), rng.integers(1, n_labels + 1, len(pr))
        pl[:k] = gl[:k]
        targets.append({"boxes": torch.tensor(gt, dtype=torch.float32),
                        "labels": torch.tensor(gl)})
        preds.append({"boxes": torch.tensor(pr, dtype=torch.float32),
                      "scores": torch.tensor(rng.uniform(0, 1, len(pr)), dtype=torch.float32),
                      "labels": torch.tensor(pl)})
    return preds, targets


# --- IoU ---------------------------------------------------------------------------------

def test_iou_edge_cases():
    a = torch.tensor([[0.0, 0, 10, 10]])
    cases = {"disjoint": ([20, 20, 30, 30], 0.0), "identical": ([0, 0, 10, 10], 1.0),
             "touching": ([10, 0, 20, 10], 0.0), "contained": ([2, 2, 7, 7], 25 / 100),
             "half": ([0, 0, 10, 5], 0.5)}
    for name, (b, expected) in cases.items():
        got = box_iou(a, torch.tensor([b], dtype=torch.float32)).item()
        assert got == pytest.approx(expected), f"{name}: expected {expected}, got {got}"


def test_iou_shapes_and_bad_input():
    assert box_iou(torch.zeros(0, 4), torch.rand(3, 4)).shape == (0, 3)
    assert box_iou(torch.rand(2, 4), torch.zeros(0, 4)).shape == (2, 0)
    assert box_iou([[0, 0, 1, 1]], [[0, 0, 1, 1], [0, 0, 2, 2]]).shape == (1, 2)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        box_iou(torch.zeros(3), torch.zeros(1, 4))


# --- matching ----------------------------------------------------------------------------

def test_high_score_prediction_takes_the_box_from_a_better_one():
    gt = T([0, 0, 10, 10])
    pred = P(([0, 0, 10, 10], 0.5), ([0, 0, 10, 6], 0.9))  # IoU 1.0 at 0.5, IoU 0.6 at 0.9
    m = match_detections(pred, gt)
    assert m.order.tolist() == [1, 0]
    assert m.is_tp.tolist() == [True, False]
    assert m.matched_gt.tolist() == [0, -1]
    assert m.iou[0] == pytest.approx(0.6)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


def test_duplicates_are_false_positives_and_best_free_box_is_taken():
    gt = T([0, 0, 10, 10], [5, 0, 15, 10])
    pred = P(([0, 0, 10, 10], 0.9), ([0, 0, 10, 10], 0.8), ([1, 0, 11, 10], 0.7),
             ([5, 0, 15, 10], 0.6))
    m = match_detections(pred, gt)
    # 0.9 takes box 0; 0.8 (a duplicate) overlaps box 1 only at IoU 1/3: FP; 0.7 overlaps
    # box 0 best, but it is taken, and box 1 at 6/14 < 0.5: FP; 0.6 takes box 1.
    assert m.is_tp.tolist() == [True, False, False, True]
    assert m.matched_gt.tolist() == [0, -1, -1, 1]
    assert m.detected.tolist() == [True, True]


def test_matching_threshold_inclusive_labels_and_score_filter():
    gt = T([0, 0, 10, 10])
    assert match_detections(P(([0, 0, 10, 5], 0.9)), gt).tp == 1  # IoU exactly 0.5 matches
    assert match_detections(P(([0, 0, 10, 5], 0.9)), gt, iou_thresh=0.51).tp == 0
    other = P(([0, 0, 10, 10], 0.9), labels=[2])
    assert match_detections(other, gt).fp == 1
    m = match_detections(P(([0, 0, 10, 10], 0.4)), gt, score_thresh=0.5)
    assert (m.tp, m.fp, m.fn, len(m.scores)) == (0, 0, 1, 0)
    no_labels = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.7])}
    assert match_detections(no_labels, {"boxes": [[0, 0, 10, 10]]}).tp == 1


def test_matching_agrees_with_pycocotools_evaluate_img():
    preds, targets = random_set(40, seed=3)
    gt_dict, dets = _coco_json(preds, targets)
    ev = _pycocotools_eval(gt_dict, dets)
    n_img = len(targets)
    for i in range(n_img):
        m = match_detections(preds[i], targets[i], iou_thresh=0.5)
        e = ev.evalImgs[i]  # category 1, area "all", image i
        expected = [] if e is None else (e["dtMatches"][0] > 0).tolist()
        assert m.is_tp.tolist() == expected, f"image {i}"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        precision_recall([P(([0, 0, 1, 1], 0.5))], [T(), T()])
    with pytest.raises(KeyError, match="scores"):
        match_detections({"boxes": torch.zeros(1, 4)}, T())
    with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
        match_detections(P(), {"boxes": [[0, 0, 1]]})
    with pytest.raises(ValueError, match="outside"):
        match_detections(P(([0, 0, 1, 1], 0.5)), T([0, 0, 1, 1]), iou_thresh=0.0)


# --- precision / recall ------------------------------------------------------------------

def _pr_case():
    targets = [T([0, 0, 10, 10], [50, 50, 60, 60]), T()]
    preds = [P(([0, 0, 10, 10], 0.9), ([20, 20, 30, 30], 0.8), ([50, 50, 60, 60], 0.3)),
             P(([0, 0, 10, 10], 0.7))]
    return preds, targets


def test_precision_recall_hand_case():
    preds, targets = _pr_case()
    r = precision_recall(preds, targets, score_thresh=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 1)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(1 / 2)
    assert r["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    r = precision_recall(preds, targets, score_thresh=0.2)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 0) and r["recall"] == 1.0


def test_precision_recall_zero_denominators_are_nan():
    r = precision_recall([P()], [T([0, 0, 10, 10])])
    assert math.isnan(r["precision"]) and r["recall"] == 0.0 and r["f1"] == 0.0
    r = precision_recall([P(([0, 0, 1, 1], 0.9))], [T()])
    assert r["precision"] == 0.0 and math.isnan(r["recall"])
    r = precision_recall([P()], [T()])
    assert all(math.isnan(r[k]) for k in ("precision", "recall", "f1"))


@pytest.mark.parametrize("seed", [0, 1])
def test_threshold_sweep_equals_precision_recall_per_threshold(seed):
    preds, targets = random_set(40, seed=seed, n_labels=2)
    for p in preds[::2]:  # ties on the thresholds themselves
        p["scores"] = torch.round(p["scores"] * 10) / 10
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.55, 0.7, 0.9, 1.0]
    sweep = threshold_sweep(preds, targets, thresholds=thresholds)
    assert sweep["threshold"].tolist() == thresholds
    for row in sweep.itertuples():
        expected = precision_recall(preds, targets, score_thresh=row.threshold)
        for k, v in expected.items():
            got = getattr(row, k)
            assert (math.isnan(v) and math.isnan(got)) or got == pytest.approx(v), (row, k)
    default = threshold_sweep(preds, targets)
    assert len(default) == 19 and default["threshold"].iloc[0] == pytest.approx(0.05)


# --- COCO mAP ----------------------------------------------------------------------------

def _coco_json(preds, targets):
    """The COCO json built by hand, independently of helpers.metrics.to_coco."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": 100 + i, "width": 256, "height": 256})
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist(), strict=True):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": lab,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(),
                             strict=True):
            dets.append({"image_id": 100 + i, "category_id": lab,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    labels = {a["category_id"] for a in anns} | {d["category_id"] for d in dets}
    cats = [{"id": c, "name": str(c)} for c in sorted(labels)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _pycocotools_eval(gt_dict, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _assert_stats_equal(got: dict, stats):
    assert len(got) == 12
    for (k, v), s in zip(got.items(), stats[:12], strict=True):
        if s < 0:
            assert math.isnan(v), f"{k}: pycocotools says -1 (undefined), got {v}"
        else:
            assert abs(v - s) <= 1e-6, f"{k}: pycocotools {s}, got {v}"


BACKENDS = ["pycocotools", "faster_coco_eval"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,n_labels", [(0, 1), (1, 1), (2, 1), (3, 2)])
def test_coco_map_equals_pycocotools(seed, n_labels, backend):
    preds, targets = random_set(60, seed=seed, n_labels=n_labels)
    assert any(len(t["boxes"]) == 0 for t in targets)
    assert any(len(p["boxes"]) == 0 for p in preds)
    ev = _pycocotools_eval(*_coco_json(preds, targets))
    assert ev.stats[0] > 0.01  # the random set is not trivially all-miss
    _assert_stats_equal(coco_map(preds, targets, backend=backend), ev.stats)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_map_counts_predictions_on_images_without_lesions(backend):
    targets = [T([10, 10, 60, 60]), T()]
    preds = [P(([10, 10, 60, 60], 0.8)), P(([10, 10, 60, 60], 0.9))]
    # ranked: FP (0.9) then TP (0.8): precision 0.5 at recall 1 -> AP50 = 0.5
    assert coco_map(preds, targets, backend=backend)["map_50"] == pytest.approx(0.5)
    assert coco_map(preds[:1], targets[:1], backend=backend)["map_50"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coco_map_without_predictions_or_lesions(backend):
    targets = [T([10, 10, 20, 20]), T()]
    r = coco_map([P(), P()], targets, backend=backend)
    assert r["map"] == 0.0 and r["mar_100"] == 0.0 and r["map_small"] == 0.0
    assert math.isnan(r["map_large"])  # no large lesion: undefined, not 0
    r = coco_map([P(([0, 0, 5, 5], 0.5))], [T()], backend=backend)
    assert math.isnan(r["map"])


def test_coco_map_printing(capsys):
    preds, targets = _pr_case()
    coco_map(preds, targets)
    assert capsys.readouterr().out == ""
    coco_map(preds, targets, verbose=True)
    assert "Average Precision" in capsys.readouterr().out
    with pytest.raises(ValueError, match="backend"):
        coco_map(preds, targets, backend="torchmetrics")


# --- RSNA metric ---------------------------------------------------------------------------

def test_rsna_metric_hand_cases():
    gt = T([0, 0, 10, 10])
    # IoU 0.6: hits at 0.40, 0.45, 0.50, 0.55; 0.60 is not > 0.60 -> 4 of 8
    assert rsna_metric([P(([0, 0, 10, 6], 0.9))], [gt]) == pytest.approx(0.5)
    # IoU 0.5 exactly: hits at 0.40 and 0.45 only
    assert rsna_metric([P(([0, 0, 10, 5], 0.9))], [gt]) == pytest.approx(0.25)
    assert rsna_metric([P(([0, 0, 10, 10], 0.9))], [gt]) == 1.0
    assert rsna_metric([P(([0, 0, 10, 10], 0.9))], [T()]) == 0.0  # only a false positive
    assert rsna_metric([P()], [gt]) == 0.0  # only a miss
    # TP + duplicate: 1 / (1 + 1 + 0) at every threshold
    dup = P(([0, 0, 10, 10], 0.9), ([0, 0, 10, 10], 0.8))
    assert rsna_metric([dup], [gt]) == pytest.approx(0.5)


def test_rsna_metric_skips_empty_images_and_averages_per_image():
    gt = T([0, 0, 10, 10])
    perfect, fp_only = P(([0, 0, 10, 10], 0.9)), P(([0, 0, 10, 10], 0.9))
    assert rsna_metric([perfect, P()], [gt, T()]) == 1.0  # the empty image is skipped
    assert rsna_metric([perfect, fp_only, P(([0, 0, 10, 6], 0.9))], [gt, T(), gt]) == \
        pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert math.isnan(rsna_metric([P(), P()], [T(), T()]))
    low_fp = P(([0, 0, 10, 10], 0.9), ([50, 50, 60, 60], 0.1))
    assert rsna_metric([low_fp], [gt]) == pytest.approx(0.5)
    assert rsna_metric([low_fp], [gt], score_thresh=0.2) == 1.0
    assert math.isnan(rsna_metric([P(([0, 0, 1, 1], 0.1))], [T()], score_thresh=0.2))


# --- recall by size, image level ---------------------------------------------------------

def test_recall_by_size_counts():
    sides = [10, 32, 40, 100, 200]
    targets = [T(*[[0, 0, s, s] for s in sides])]
    preds = [P(([0, 0, 32, 32], 0.9), ([0, 0, 200, 200], 0.8), ([0, 0, 100, 100], 0.3))]
    df = recall_by_size(preds, targets)
    assert df["bin"].tolist() == ["[0.0, 32.0)", "[32.0, 64.0)", "[64.0, 128.0)", "[128.0, inf)"]
    assert df["n_gt"].tolist() == [1, 2, 1, 1]  # a side of exactly 32 is in [32, 64)
    assert df["detected"].tolist() == [0, 1, 0, 1]
    assert df["recall"].tolist() == [0.0, 0.5, 0.0, 1.0]
    df = recall_by_size(preds, targets, bins=(0, 50, 1000), score_thresh=0.2)
    assert df["n_gt"].tolist() == [3, 2] and df["detected"].tolist() == [1, 2]
    empty = recall_by_size([P()], [T()])
    assert empty["n_gt"].sum() == 0 and empty["recall"].isna().all()


def test_image_level_report_simple_case():
    targets = [T([0, 0, 10, 10]), T([0, 0, 10, 10]), T(), T()]
    preds = [P(([0, 0, 10, 10], 0.9)), P(([0, 0, 10, 10], 0.3)), P(([5, 5, 9, 9], 0.6)), P()]
    r = image_level_report(preds, targets, score_thresh=0.5)
    assert r["y_score"].tolist() == pytest.approx([0.9, 0.3, 0.6, 0.0])
    assert r["report"]["lesion"]["recall"] == 0.5 and r["report"]["lesion"]["precision"] == 0.5
    assert r["confusion_matrix"].tolist() == [[1, 1], [1, 1]]
    assert r["roc_auc"] == pytest.approx(0.75)  # 3 of 4 sick-healthy pairs ranked right
    one_class = image_level_report(preds[:2], targets[:2])
    assert math.isnan(one_class["roc_auc"])


def test_coco_map_falls_back_to_pycocotools(monkeypatch):
    preds, targets = random_set(20, seed=5)
    expected = _pycocotools_eval(*_coco_json(preds, targets)).stats
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed
    _assert_stats_equal(coco_map(preds, targets), expected)
    with pytest.raises(ImportError):
        coco_map(preds, targets, backend="faster_coco_eval")


def test_bootstrap_ci_resamples_whole_groups():
    # Two studies: one with 3 slices all 1, one with 1 slice 0. Resampling studies can only
    # give means 0, 1 or 3/4; resampling slices would give other values.
    values, groups = np.array([1.0, 1.0, 1.0, 0.0]), np.array(["a", "a", "a", "b"])
    seen = set()
    est, low, high = bootstrap_ci(lambda rows: seen.add(round(values[rows].mean(), 6))
                                  or values[rows].mean(), groups, n_boot=200)
    assert seen <= {0.0, 1.0, 0.75} and est == 0.75
    assert (est, low, high) == bootstrap_ci(values, groups, n_boot=200)  # same seed, same CI
    assert low == 0.0 and high == 1.0


def test_bootstrap_ci_percentiles_and_nan_draws():
    gen = np.random.default_rng(1)
    values = gen.random(400)
    est, low, high = bootstrap_ci(values, np.arange(400), n_boot=1000, seed=3)
    assert est == pytest.approx(values.mean())
    se = values.std(ddof=1) / math.sqrt(400)  # the normal approximation's interval
    assert low == pytest.approx(est - 1.96 * se, abs=0.01)
    assert high == pytest.approx(est + 1.96 * se, abs=0.01)
    truth = np.array([1, 0, 0, 0])  # recall is NaN on draws without the one positive
    called = np.array([1, 0, 1, 0])

    def recall(rows):
        pos = truth[rows] == 1
        return called[rows][pos].mean() if pos.any() else math.nan

    assert bootstrap_ci(recall, np.arange(4), n_boot=100) == (1.0, 1.0, 1.0)
    assert math.isnan(bootstrap_ci(lambda rows: math.nan, np.arange(4), n_boot=5)[1])
    with pytest.raises(ValueError, match="one label per row"):
        bootstrap_ci([1.0], np.zeros((1, 1)))

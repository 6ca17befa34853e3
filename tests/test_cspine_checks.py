"""The C-spine notebook's hidden checks: each passes the notebook's own solution and fails a
plausible wrong answer and, where a library already holds the answer, one that calls it; the
visible checks fail a wrong answer too."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import nbformat
import numpy as np
import pandas as pd
import pytest
import sklearn.utils.class_weight
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch.utils.data import Dataset

import helpers.metrics
from autograder import common
from autograder import cspine_checks as checks
from autograder.common import compare_sample
from autograder.reference_datasets import CSpineH5Dataset, to_sample
from course.config import load
from helpers import progress
from helpers.data.cspine_pack import pack_cspine
from helpers.data.hdf5 import open_cspine, read_column
from helpers.transforms import eval_transforms
from tests.competition_layout import competition_folder
from tests.solutions import solution_namespace

NOTEBOOK = load().source_notebook(load().assignment("cspine"))
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sol() -> dict:
    """The notebook's solution cells, executed with the names the notebook imports."""
    return solution_namespace(NOTEBOOK, {
        "np": np, "pd": pd, "torch": torch, "Path": Path, "os": os, "h5py": h5py,
        "Dataset": Dataset, "open_cspine": open_cspine, "GradCAM": GradCAM,
        "FasterRCNNBoxScoreTarget": FasterRCNNBoxScoreTarget})


def test_dataset(sol):
    base = sol["CSpineSlices"]
    checks.check_dataset(base)

    class Cheat(base):
        def __getitem__(self, idx):
            i = int(self.indices[idx])
            rows = self.bboxes[i][(self.bboxes[i] != -1).any(axis=1)]
            return to_sample(np.asarray(self._images()[i], np.float32),
                             np.hstack([rows[:, :2], rows[:, :2] + rows[:, 2:]]), i,
                             self.transform)

    with pytest.raises(AssertionError, match="to_sample"):
        checks.check_dataset(Cheat)

    class CornerRepair(base):  # the capstone notebook's reading: corners, "fixed" by min/max
        def __getitem__(self, idx):
            return _sketch(self, idx, decode="corners")

    with pytest.raises(AssertionError, match="boxes"):
        checks.check_dataset(CornerRepair)

    class ZeroPaddingRule(base):  # has_box from non-zero rows: the -1 rows stay as boxes
        def __getitem__(self, idx):
            return _sketch(self, idx, padding=0.0, min_side=-np.inf)

    with pytest.raises(AssertionError, match="boxes given to the transform"):
        checks.check_dataset(ZeroPaddingRule)

    class KeepsFillRows(base):  # decodes every row, -1 rows included, then "repairs" them
        def __getitem__(self, idx):
            return _sketch(self, idx, keep_fill=True, decode="xywh+repair")

    with pytest.raises(AssertionError, match="boxes given to the transform"):
        checks.check_dataset(KeepsFillRows)

    class KeepsSubPixel(base):  # decodes right but keeps the 0.6 px box
        def __getitem__(self, idx):
            return _sketch(self, idx, min_side=0.0)

    with pytest.raises(AssertionError, match="boxes"):
        checks.check_dataset(KeepsSubPixel)

    class Restretches(base):  # min-max scales the already scaled slice again
        def __getitem__(self, idx):
            return _sketch(self, idx, restretch=True)

    with pytest.raises(AssertionError, match="image"):
        checks.check_dataset(Restretches)

    class Sketch(base):  # the sketch itself, with every switch right, is a right answer
        def __getitem__(self, idx):
            return _sketch(self, idx)

    checks.check_dataset(Sketch)

    class ImageIdVector(base):  # a 1-element image_id is as good as a 0-d one
        def __getitem__(self, idx):
            return _sketch(self, idx, id_shape=(1,))

    checks.check_dataset(ImageIdVector)


def _sketch(ds, idx, decode="xywh", padding=-1.0, keep_fill=False, min_side=1.0,
            restretch=False, id_shape=()):
    """A compact __getitem__ with switches for the mistakes the check must catch."""
    i = int(ds.indices[idx])
    image = np.asarray(ds._images()[i], np.float32)
    if restretch:
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo) if hi > lo else 0 * image
    rows = ds.bboxes[i]
    if not keep_fill:
        rows = rows[np.any(rows != padding, axis=1)]
    if decode.startswith("xywh"):
        rows = np.hstack([rows[:, :2], rows[:, :2] + rows[:, 2:]])
    if decode != "xywh":
        rows = np.hstack([np.minimum(rows[:, :2], rows[:, 2:]),
                          np.maximum(rows[:, :2], rows[:, 2:])])
    rows = rows[((rows[:, 2:] - rows[:, :2]) >= min_side).all(axis=1)]
    out = ds.transform(image=np.repeat(image[:, :, None], 3, 2), bboxes=rows,
                       labels=np.ones(len(rows)))
    b = torch.as_tensor(np.asarray(out["bboxes"], np.float32)).reshape(-1, 4)
    return out["image"].float(), {"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64),
                                  "image_id": torch.tensor(i).reshape(id_shape),
                                  "area": (b[:, 2:] - b[:, :2]).prod(1),
                                  "iscrowd": torch.zeros(len(b), dtype=torch.int64)}


def test_solution_and_visible_check_read_a_packed_file(sol, tmp_path):
    """A file packed from a competition layout the way the public notebook packs it: the
    notebook's Dataset solution reads the competition's boxes back, agrees with the
    reference, and the graded visible check runs on it."""
    out = pack_cspine(competition_folder(tmp_path / "rsna2022"), tmp_path / "subset.h5",
                      progress=False)
    truth = pd.read_csv(tmp_path / "rsna2022" / "train_bounding_boxes.csv")
    uids, numbers = read_column(out, "StudyInstanceUID"), read_column(out, "SliceNumber")
    n = len(uids)
    ds = sol["CSpineSlices"](out, np.arange(n), eval_transforms(256))
    ref = CSpineH5Dataset(out, transform=eval_transforms(256))
    for i in range(n):
        image, target = ds[i]
        compare_sample(f"packed row {i}", image, target, *ref[i])
        rows = truth[(truth["StudyInstanceUID"] == uids[i])
                     & (truth["slice_number"] == int(numbers[i]))]
        xywh = rows[["x", "y", "width", "height"]].to_numpy(np.float32) * 0.5
        want = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]).reshape(-1, 4)
        np.testing.assert_allclose(target["boxes"].numpy(), want, rtol=1e-6)
    cell = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "test_dataset")
    visible = cell.split("### BEGIN HIDDEN TESTS")[0]
    labels = read_column(out, "labels")
    exec(visible, {**sol, "h5_path": out, "has_box": labels == 1, "slice_px": 256,  # noqa: S102
                   "eval_transforms": eval_transforms, "progress": progress})


def test_fine_tuning(sol):
    checks.check_fine_tuning(sol["setup_fine_tuning"])

    def freeze_only_body(model, lr, weight_decay=1e-4, factor=0.5, patience=1):
        for p in model.backbone.body.parameters():  # the FPN stays trainable
            p.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                weight_decay=weight_decay)
        return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=factor,
                                                               patience=patience)

    with pytest.raises(AssertionError, match="backbone"):
        checks.check_fine_tuning(freeze_only_body)

    def step_schedule(model, lr, weight_decay=1e-4, factor=0.5, patience=1):
        opt, _ = sol["setup_fine_tuning"](model, lr, weight_decay, factor, patience)
        return opt, torch.optim.lr_scheduler.StepLR(opt, 1, factor)

    with pytest.raises(AssertionError, match="ReduceLROnPlateau"):
        checks.check_fine_tuning(step_schedule)




# ------------------------------------------------------------------ sampling weights


def test_sampling_weights(sol):
    checks.check_sampling_weights(sol["balanced_weights"])

    def inverse_counts(labels):  # balanced, but not summing to 1 as the text asks
        y = np.asarray(labels).astype(bool)
        return np.where(y, 1.0 / max(y.sum(), 1), 1.0 / max((~y).sum(), 1))

    with pytest.raises(AssertionError, match="total weight"):
        checks.check_sampling_weights(inverse_counts)

    def by_frequency(labels):  # each slice weighted by its class's share: the majority wins
        y = np.asarray(labels).astype(bool)
        share = np.where(y, y.mean(), 1 - y.mean())
        return share / share.sum()

    with pytest.raises(AssertionError, match="total weight"):
        checks.check_sampling_weights(by_frequency)

    def half_each_always(labels):  # 0.5 per class even when one class is absent
        y = np.asarray(labels).astype(bool)
        return np.where(y, 0.5 / max(y.sum(), 1), 0.5 / max((~y).sum(), 1))

    with pytest.raises(AssertionError, match="no fractured slice"):
        checks.check_sampling_weights(half_each_always)

    def with_sklearn(labels):  # right numbers, from the library the text puts off limits
        w = sklearn.utils.class_weight.compute_sample_weight("balanced", np.asarray(labels))
        return w / w.sum()

    np.testing.assert_allclose(with_sklearn([1, 0, 0, 0]), sol["balanced_weights"]([1, 0, 0, 0]))
    with pytest.raises(AssertionError, match="compute_sample_weight"):
        checks.check_sampling_weights(with_sklearn)


# ------------------------------------------------------------------ study level


def test_study_table(sol):
    """No library holds this answer (pandas' groupby is the tool), so there is no cheat."""
    checks.check_study_table(sol["study_table"])

    def mean_score(slices):  # averages a study's one suspicious slice away
        by = slices.groupby("study")
        return pd.DataFrame({"score": by["score"].mean(), "truth": by["truth"].max(),
                             "n_slices": by.size()})

    with pytest.raises(AssertionError, match="'score'"):
        checks.check_study_table(mean_score)

    def first_slice_truth(slices):  # truth of whichever slice comes first
        by = slices.groupby("study")
        return pd.DataFrame({"score": by["score"].max(), "truth": by["truth"].first(),
                             "n_slices": by.size()})

    with pytest.raises(AssertionError, match="'truth'"):
        checks.check_study_table(first_slice_truth)


def _threshold_for(scores, truth, target):
    """The highest threshold meeting ``target`` sensitivity on (scores, truth)."""
    ranked = np.sort(np.asarray(scores, float)[np.asarray(truth) == 1])[::-1]
    return float(ranked[int(np.ceil(target * len(ranked) - 1e-9)) - 1])


def _report(threshold, test_scores, test_truth, strict=False):
    s, sick = np.asarray(test_scores, float), np.asarray(test_truth) == 1
    called = s > threshold if strict else s >= threshold
    return {"threshold": threshold, "sensitivity": float(called[sick].mean()),
            "specificity": float((~called[~sick]).mean())}


def test_operating_point(sol):
    checks.check_operating_point(sol["operating_point"])

    def tuned_on_test(val_scores, val_truth, test_scores, test_truth, min_sensitivity=0.9):
        t = _threshold_for(test_scores, test_truth, min_sensitivity)
        return _report(t, test_scores, test_truth)

    with pytest.raises(AssertionError, match="threshold"):
        checks.check_operating_point(tuned_on_test)

    def tuned_on_both(val_scores, val_truth, test_scores, test_truth, min_sensitivity=0.9):
        t = _threshold_for(np.concatenate([val_scores, test_scores]),
                           np.concatenate([val_truth, test_truth]), min_sensitivity)
        return _report(t, test_scores, test_truth)

    with pytest.raises(AssertionError, match="threshold"):
        checks.check_operating_point(tuned_on_both)

    def strictly_above(val_scores, val_truth, test_scores, test_truth, min_sensitivity=0.9):
        t = _threshold_for(val_scores, val_truth, min_sensitivity)
        return _report(t, test_scores, test_truth, strict=True)

    with pytest.raises(AssertionError, match="specificity"):
        checks.check_operating_point(strictly_above)

    def validation_numbers(val_scores, val_truth, test_scores, test_truth, min_sensitivity=0.9):
        t = _threshold_for(val_scores, val_truth, min_sensitivity)
        return _report(t, val_scores, val_truth)  # reports validation, not test

    with pytest.raises(AssertionError, match="sensitivity|specificity"):
        checks.check_operating_point(validation_numbers)

    # the reference's ceil and the solution's k / n >= target agree on the check's inputs
    checks.check_operating_point(
        lambda vs, vt, ts, tt, min_sensitivity=0.9:
        _report(_threshold_for(vs, vt, min_sensitivity), ts, tt))


def _bootstrap(resample, drop_nan=True):
    """A percentile bootstrap whose draws come from ``resample(slices, rng)``."""

    def boot(slices, statistic, n_boot=1000, level=0.95, seed=0):
        rng = np.random.default_rng(seed)
        draws = np.array([statistic(resample(slices, rng)) for _ in range(n_boot)], float)
        if drop_nan:
            draws = draws[~np.isnan(draws)]
        low, high = np.percentile(draws, [50 * (1 - level), 50 * (1 + level)])
        return float(statistic(slices)), float(low), float(high)

    return boot


def _slice_level(slices, rng):
    return slices.iloc[rng.integers(0, len(slices), len(slices))]


def _whole_study_draw(slices, rng, relabel: bool):
    """Whole studies drawn with replacement (index arrays: the check runs under a profiler,
    where a pd.concat per draw would take minutes)."""
    rows_of = list(slices.groupby("study").indices.values())
    picks = rng.integers(0, len(rows_of), len(rows_of))
    drawn = slices.iloc[np.concatenate([rows_of[k] for k in picks])]
    if not relabel:  # a study drawn twice keeps its UID, so it merges into one study
        return drawn
    return drawn.assign(study=np.repeat(np.arange(len(picks)), [len(rows_of[k]) for k in picks]))


def _studies_kept_labels(slices, rng):
    return _whole_study_draw(slices, rng, relabel=False)


def _studies_relabelled(slices, rng):
    return _whole_study_draw(slices, rng, relabel=True)


def test_bootstrap(sol):
    checks.check_bootstrap(sol["bootstrap_by_study"])
    with pytest.raises(AssertionError, match="distinct study labels"):
        checks.check_bootstrap(_bootstrap(_slice_level))
    with pytest.raises(AssertionError, match="distinct study labels"):
        checks.check_bootstrap(_bootstrap(_studies_kept_labels))

    def unseeded(slices, statistic, n_boot=1000, level=0.95, seed=0):
        return _bootstrap(_studies_relabelled)(slices, statistic, n_boot, level,
                                               seed=int(np.random.default_rng().integers(1e9)))

    with pytest.raises(AssertionError, match="same seed"):
        checks.check_bootstrap(unseeded)

    def with_helper(slices, statistic, n_boot=1000, level=0.95, seed=0):
        return helpers.metrics.bootstrap_ci(
            lambda rows: statistic(slices.iloc[rows]), slices["study"].to_numpy(),
            n_boot=n_boot, level=level, seed=seed)

    with pytest.raises(AssertionError, match="bootstrap_ci"):
        checks.check_bootstrap(with_helper)


@pytest.mark.slow  # two whole runs of the check under the tripwire profiler (~25 s each)
def test_bootstrap_leaves_nan_draws_out():
    """Another right form passes; the same one keeping NaN draws fails (only the last step of
    the check tells them apart, so both run it whole)."""
    checks.check_bootstrap(_bootstrap(_studies_relabelled))
    with pytest.raises(AssertionError, match="NaN"):
        checks.check_bootstrap(_bootstrap(_studies_relabelled, drop_nan=False))


# ------------------------------------------------------------------ visible checks


def _visible(grade_id: str) -> str:
    cell = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return cell.split("### BEGIN HIDDEN TESTS")[0]


@pytest.mark.parametrize(("grade_id", "name", "wrong"), [
    ("test_sampling_weights", "balanced_weights",
     lambda labels: np.full(len(labels), 1.0 / len(labels))),
    ("test_study_table", "study_table",
     lambda s: s.groupby("study").agg(score=("score", "mean"), truth=("truth", "max"),
                                      n_slices=("score", "size"))),
    ("test_operating_point", "operating_point",
     lambda vs, vt, ts, tt, min_sensitivity=0.9:
     _report(_threshold_for(ts, tt, min_sensitivity), ts, tt)),
    ("test_bootstrap", "bootstrap_by_study", _bootstrap(_slice_level)),
])
def test_visible_checks_pass_the_solution_and_fail_a_wrong_answer(sol, grade_id, name, wrong,
                                                                  capsys):
    source = _visible(grade_id)
    names = {"np": np, "pd": pd, "progress": progress}
    exec(source, {**names, name: sol[name]})  # noqa: S102 - our own notebook
    out = capsys.readouterr().out
    assert "fed in:" in out and "expected:" in out and "got:" in out
    assert "visible check passed" in out
    with pytest.raises(AssertionError):
        exec(source, {**names, name: wrong})  # noqa: S102


# ------------------------------------------------------------------ Grad-CAM (not graded)


def test_notebook_gradcam_cell_works_on_the_frozen_backbone(sol):
    """The C-spine notebook no longer grades Grad-CAM (assignment 1 does), but it runs the
    pasted function on the fine-tuned model: its own cell must work with a frozen backbone."""
    common.check_gradcam(sol["gradcam_for_box"], frozen_backbone=True)


def _gradcam_without_input_grad(model, image, box, label=1):
    """The solution without ``requires_grad_`` on the input: pytorch-grad-cam 1.5.x's GradCAM
    does not set it itself (``compute_input_gradient`` defaults to False)."""
    where = next(model.parameters()).device
    box_target = FasterRCNNBoxScoreTarget(labels=[int(label)],
                                          bounding_boxes=[torch.as_tensor(box).reshape(4)])
    model = model.eval()
    with GradCAM(model=model, target_layers=[model.backbone.body.layer4]) as cam:
        maps = cam(input_tensor=image[None].to(where), targets=[box_target])
    model.zero_grad(set_to_none=True)
    return maps[0]


def test_gradcam_without_input_grad_fails_only_on_the_frozen_backbone():
    """What the notebook's text warns about: assignment 1's check passes such a function, the
    frozen backbone of the fine-tuned model does not."""
    common.check_gradcam(_gradcam_without_input_grad)
    with pytest.raises(AssertionError, match="backbone is frozen"):
        common.check_gradcam(_gradcam_without_input_grad, frozen_backbone=True)

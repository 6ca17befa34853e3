"""Hidden checks of the C-spine notebook (grading only: never shipped to students).

As in ``pneumonia_checks``: each check runs one exercise's function on fresh inputs,
compares it with a reference computed outside the student's call, and fails when the
student's function calls the reference it was asked to write. Assignment 2 grades what is
new in it (the real box encoding, class-balanced sampling, the frozen-backbone set-up, an
operating point chosen on validation, study-level aggregation and its bootstrap interval);
the IoU, head, optimizer, calibration and Grad-CAM exercises are assignment 1's, checked in
``pneumonia_checks``.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import sklearn.utils.class_weight
import torch

import helpers.metrics
import helpers.models
from autograder import reference_datasets
from autograder.common import compare_sample, fail, flip_transform
from autograder.isolation import recorded
from autograder.tripwire import run_without
from helpers.data.synthetic import synth_cspine
from helpers.transforms import eval_transforms

__all__ = ["check_bootstrap", "check_dataset", "check_fine_tuning", "check_operating_point",
           "check_sampling_weights", "check_study_table"]

DATASET_REFS = {
    "autograder.reference_datasets": reference_datasets,
}
WEIGHT_REFS = {
    "sklearn.utils.class_weight.compute_sample_weight":
        sklearn.utils.class_weight.compute_sample_weight,
    "sklearn.utils.class_weight.compute_class_weight":
        sklearn.utils.class_weight.compute_class_weight,
}
BOOTSTRAP_REFS = {"helpers.metrics.bootstrap_ci": helpers.metrics.bootstrap_ci}


# ------------------------------------------------------------------ dataset


def _fixture(folder: Path) -> tuple[Path, list[int]]:
    """A fresh synthetic file in the real encoding ([x, y, width, height] rows, -1 fill)
    with known rows planted: an extra box, a sub-pixel box, a slice that stops short of 1
    (as after the packer's resize) and a constant slice (0, as the packer writes it).
    Returns its path and the slices to compare."""
    path = synth_cspine(folder / "check.h5", slices=40, seed=4321, size=64)
    with h5py.File(path, "r+") as f:
        boxes, labels = f["bboxes"][()], f["labels"][()]
        fractured, empty = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        a, b = int(fractured[0]), int(fractured[-1])
        n_a = int((boxes[a] != -1).any(axis=1).sum())
        boxes[a, n_a] = [30.0, 20.0, 14.0, 10.0]  # read as corners, x1 > x2 and y1 > y2
        boxes[a, n_a + 1] = [5.0, 5.0, 0.6, 20.0]  # 0.6 px wide: dropped
        boxes[b, 0] = [40.0, 30.0, 12.0, 9.0]
        f["bboxes"][...] = boxes
        short = int(empty[-1])
        f["images"][short] = 0.05 + 0.85 * f["images"][short]
        constant = int(empty[0])
        f["images"][constant] = 0.0
    return path, [a, b, constant, short]


def _watched(transform, fed: str):
    """The transform, after a look at the boxes the student's Dataset hands it: corners
    inside the image, each at least a little wide and high (a -1 padding row decoded as a
    box, or a row read as corners, fails here with a clear message instead of deep inside
    albumentations)."""

    def call(*args, **kwargs):
        boxes = np.asarray(kwargs.get("bboxes", []), dtype=np.float64).reshape(-1, 4)
        image = np.asarray(kwargs.get("image", np.zeros((0, 0))))
        h, w = image.shape[:2] if image.ndim >= 2 else (math.inf, math.inf)
        bad = ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
               | (boxes[:, :2] < -1e-3).any(axis=1) | (boxes[:, 2] > w + 1e-3)
               | (boxes[:, 3] > h + 1e-3))
        if bad.any():
            fail("boxes given to the transform", fed,
                 "corners [x1, y1, x2, y2] inside the image with x2 > x1 and y2 > y1 (rows "
                 "of -1 dropped, [x, y, width, height] decoded)", boxes[bad].tolist())
        return transform(*args, **kwargs)

    return call


@recorded
def check_dataset(dataset_cls) -> None:
    """The student's Dataset against the reference CSpineH5Dataset on a fresh file."""
    with tempfile.TemporaryDirectory(prefix="cspine-check-") as tmp:
        path, picks = _fixture(Path(tmp))
        for name, transform in (("resize to 48 px", eval_transforms(48)),
                                ("horizontal flip", flip_transform())):
            ds = dataset_cls(path, picks, _watched(transform, f"{name}, slices {picks}"))
            ref = reference_datasets.CSpineH5Dataset(path, indices=picks,
                                                         transform=transform)
            if len(ds) != len(ref):
                fail("number of samples", f"{name}, slices {picks}", len(ref), len(ds))
            for k in range(len(ds)):
                image, target = run_without(ds.__getitem__, DATASET_REFS, k)
                ref_image, ref_target = ref[k]
                compare_sample(f"{name}, file row {picks[k]}", image, target, ref_image,
                                ref_target)


# ------------------------------------------------------------------ sampling weights


def _balanced_reference(labels: np.ndarray) -> np.ndarray:
    """Each present class gets an equal share of the total weight 1, split evenly."""
    y = labels.astype(bool)
    counts = {True: int(y.sum()), False: int((~y).sum())}
    present = sum(n > 0 for n in counts.values())
    return np.array([1.0 / (present * counts[bool(v)]) for v in y])


@recorded
def check_sampling_weights(weights_fn) -> None:
    """Per-slice weights under which both classes are drawn equally often, summing to 1,
    for int8, bool and list labels at several prevalences, and a split of one class only."""
    gen = np.random.default_rng(2022)
    cases = [("int8, 25 % fractured (the file's rate)", (gen.random(40) < 0.25).astype(np.int8)),
             ("bool, 1 in 13 fractured", np.arange(13) == 5),
             ("list, 7 of 10 fractured", [1, 1, 0, 1, 1, 1, 0, 1, 0, 1]),
             ("int8, no fractured slice at all", np.zeros(6, np.int8))]
    for fed, labels in cases:
        want = _balanced_reference(np.asarray(labels))
        got = np.asarray(run_without(weights_fn, WEIGHT_REFS, labels), dtype=np.float64)
        fed = f"labels {np.asarray(labels).astype(int).tolist()} ({fed})"
        if got.shape != want.shape:
            fail("weights' shape (one per slice)", fed, want.shape, got.shape)
        y = np.asarray(labels).astype(bool)
        shares = (float(got[y].sum()), float(got[~y].sum()))
        want_shares = (float(want[y].sum()), float(want[~y].sum()))
        if not np.allclose(shares, want_shares, atol=1e-9):
            fail("(total weight of fractured slices, of the others)", fed, want_shares, shares)
        if not np.allclose(got, want, atol=1e-9):
            fail("weights", fed, want.round(4).tolist(), got.round(4).tolist())


# ------------------------------------------------------------------ optimizer (fine-tuning)


def _same_params(opt, want: list, what: str, fed: str) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    if len(params) != len(want) or {id(p) for p in params} != {id(p) for p in want}:
        fail(what, fed, f"the {len(want)} trainable tensors", f"{len(params)} tensors")


# ------------------------------------------------------------------ fine-tuning


@recorded
def check_fine_tuning(setup_fn) -> None:
    """Backbone frozen, every head parameter trainable and optimised, the plateau schedule."""
    torch.manual_seed(9)
    model = helpers.models.build_detector(helpers.models.SMALL, num_classes=2, pretrained=False,
                                          min_size=64, max_size=64)
    model.rpn.head.conv[0][0].weight.requires_grad_(False)  # frozen earlier: must thaw
    model.backbone.fpn.layer_blocks[0][0].weight.requires_grad_(True)
    fed = "a small detector, lr=2e-5, weight_decay=0.05, factor=0.2, patience=3"
    out = setup_fn(model, lr=2e-5, weight_decay=0.05, factor=0.2, patience=3)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("return value", fed, "(optimizer, scheduler)", type(out).__name__)
    opt, sched = out
    thawed = [n for n, p in model.named_parameters() if n.startswith("backbone.")
              and p.requires_grad]
    if thawed:
        fail("backbone parameters still trainable", fed, "none", thawed[:3])
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    frozen = [n for n, p in model.named_parameters() if not n.startswith("backbone.")
              and not p.requires_grad]
    if frozen:
        fail("head parameters left frozen", fed, "none", frozen[:3])
    if not isinstance(opt, torch.optim.AdamW):
        fail("optimizer type", fed, "torch.optim.AdamW", type(opt).__name__)
    _same_params(opt, heads, "parameters in the optimizer (the heads')", fed)
    got = (opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"])
    if not np.allclose(got, (2e-5, 0.05)):
        fail("(lr, weight_decay)", fed, (2e-5, 0.05), got)
    if (not isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau)
            or sched.optimizer is not opt):
        fail("scheduler", fed, "a ReduceLROnPlateau on that optimizer", type(sched).__name__)
    if (sched.mode, sched.factor, sched.patience) != ("min", 0.2, 3):
        fail("(mode, factor, patience)", fed, ("min", 0.2, 3),
              (sched.mode, sched.factor, sched.patience))


# ------------------------------------------------------------------ study level


def slice_fixture(gen: np.random.Generator, n_studies: int, caught: int, fractured: int,
                 sizes=(3, 13)) -> pd.DataFrame:
    """Slices of ``n_studies`` studies (string UIDs, rows shuffled): the first ``fractured``
    studies are fractured and each shows its fracture on one slice, scored 0.9 on the first
    ``caught`` of them and 0.2 elsewhere; every other slice scores below 0.5."""
    rows = []
    for s in range(n_studies):
        uid = f"1.2.826.0.1.3680043.{7000 + 37 * s}"
        size = int(gen.integers(*sizes))
        scores = gen.uniform(0.0, 0.45, size)
        truth = np.zeros(size, np.int64)
        if s < fractured:
            k = int(gen.integers(0, size))
            truth[k], scores[k] = 1, 0.9 if s < caught else 0.2
        rows += [{"study": uid, "score": float(sc), "truth": int(t), "size": size}
                 for sc, t in zip(scores, truth, strict=True)]
    frame = pd.DataFrame(rows)
    return frame.iloc[gen.permutation(len(frame))].reset_index(drop=True)


@recorded
def check_study_table(table_fn) -> None:
    """Per study: the highest slice score, whether any slice is fractured, the slice count."""
    gen = np.random.default_rng(77)
    slices = slice_fixture(gen, n_studies=9, caught=3, fractured=5)
    fed = (f"{len(slices)} shuffled slices of 9 studies (5 fractured), columns "
           f"{list(slices.columns)}")
    got = table_fn(slices.copy())
    by = slices.groupby("study")
    want = pd.DataFrame({"score": by["score"].max(), "truth": by["truth"].max(),
                         "n_slices": by.size()})
    if not isinstance(got, pd.DataFrame):
        fail("return value", fed, "a DataFrame indexed by study", type(got).__name__)
    if sorted(map(str, got.index)) != sorted(want.index):
        fail("index (one row per study UID)", fed, sorted(want.index), sorted(got.index))
    missing = [c for c in ("score", "truth", "n_slices") if c not in got.columns]
    if missing:
        fail("columns", fed, ["score", "truth", "n_slices"], list(got.columns))
    got = got.reindex(want.index)
    for column, what in (("score", "highest slice score"), ("truth", "any fractured slice"),
                         ("n_slices", "number of slices")):
        g, w = got[column].to_numpy(np.float64), want[column].to_numpy(np.float64)
        if not np.allclose(g, w, atol=1e-9):
            fail(f"'{column}' per study ({what})", fed, w.round(3).tolist(), g.round(3).tolist())


def _operating_reference(val_scores, val_truth, test_scores, test_truth, target) -> dict:
    """The highest threshold meeting the sensitivity target on validation, used on test."""
    fractured = np.sort(val_scores[val_truth == 1])
    k = int(math.ceil(target * len(fractured) - 1e-9))  # fractured cases that must pass
    threshold = float(fractured[len(fractured) - max(k, 1)])
    called, sick = test_scores >= threshold, test_truth == 1
    return {"threshold": threshold, "sensitivity": float(called[sick].mean()),
            "specificity": float((~called[~sick]).mean())}


@recorded
def check_operating_point(op_fn) -> None:
    """The threshold comes from the validation cases alone (test scores sit higher, so a
    threshold tuned on test, or on both splits, differs) and is applied unchanged, with
    score >= threshold, to test; ties and a test score exactly on the threshold included."""
    gen = np.random.default_rng(1234)
    for target in (0.9, 0.75, 0.6):
        # 21 fractured: target x 21 is no whole number, so k / n >= target and a ceil agree
        val_truth = (np.arange(63) % 3 == 0).astype(np.int64)
        val_scores = np.round(np.where(val_truth == 1, gen.beta(4, 2, 63), gen.beta(2, 4, 63)),
                              2)  # rounded: ties
        test_truth = (np.arange(45) % 3 == 0).astype(np.int64)
        test_scores = np.clip(np.where(test_truth == 1, gen.beta(6, 2, 45), gen.beta(2, 3, 45))
                              + 0.1, 0, 1)
        want = _operating_reference(val_scores, val_truth, test_scores, test_truth, target)
        test_scores[1] = want["threshold"]  # a healthy test case exactly on it: called
        want = _operating_reference(val_scores, val_truth, test_scores, test_truth, target)
        fed = (f"63 validation cases (21 fractured, tied scores), 45 test cases (15 "
               f"fractured, scored higher), min_sensitivity={target}")
        got = op_fn(val_scores.copy(), val_truth.copy(), test_scores.copy(), test_truth.copy(),
                    min_sensitivity=target)
        if not isinstance(got, dict) or not {"threshold", "sensitivity", "specificity"} <= set(got):
            fail("return value", fed, "a dict with threshold, sensitivity, specificity", got)
        if not math.isclose(float(got["threshold"]), want["threshold"], abs_tol=1e-9):
            fail("threshold (from the validation cases only)", fed, want["threshold"],
                 got["threshold"])
        for key in ("sensitivity", "specificity"):
            if not math.isclose(float(got[key]), want[key], abs_tol=1e-9):
                fail(f"test {key} at that threshold (score >= threshold)", fed,
                     round(want[key], 4), round(float(got[key]), 4))


def _per_study_max(frame: pd.DataFrame, column: str) -> np.ndarray:
    """The largest value of ``column`` per study label (numpy: the checks run under a
    profiler hook, where pandas' groupby is slow)."""
    codes, uniques = pd.factorize(frame["study"])
    out = np.full(len(uniques), -np.inf)
    np.maximum.at(out, codes, frame[column].to_numpy(np.float64))
    return out


def study_sensitivity(frame: pd.DataFrame) -> float:
    """Share of a frame's fractured studies whose highest slice score is >= 0.5 (NaN if none)."""
    sick = _per_study_max(frame, "truth") == 1
    return float((_per_study_max(frame, "score")[sick] >= 0.5).mean()) if sick.any() else math.nan


def _whole_studies(frame: pd.DataFrame) -> float:
    """Share of a draw's study labels that hold exactly one whole study's slices (the
    fixture's ``size`` column is each slice's study size)."""
    codes, uniques = pd.factorize(frame["study"])
    rows = np.bincount(codes, minlength=len(uniques))
    return float((rows == _per_study_max(frame, "size")).mean())


def _mean_score(frame: pd.DataFrame) -> float:
    return float(frame["score"].mean())


def _call(boot_fn, slices, statistic, **kwargs):
    out = run_without(boot_fn, BOOTSTRAP_REFS, slices.copy(), statistic, **kwargs)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        fail("return value", kwargs, "(estimate, low, high)", out)
    return tuple(float(v) for v in out)


@recorded
def check_bootstrap(boot_fn) -> None:
    """Whole studies are resampled (each draw holds as many distinct study labels as there
    are studies, each with all of its slices), NaN draws are left out, the seed fixes the
    result, and the interval matches a study-level percentile bootstrap."""
    gen = np.random.default_rng(590)
    slices = slice_fixture(gen, n_studies=30, caught=9, fractured=12)
    fed = f"{len(slices)} shuffled slices of 30 studies (3-12 slices each)"
    n_draws = []

    def distinct(frame):
        n_draws.append(1)
        return float(frame["study"].nunique())

    got = _call(boot_fn, slices, distinct, n_boot=200, seed=3)
    if got != (30.0, 30.0, 30.0):
        fail("distinct study labels per draw (estimate, low, high)", fed,
             (30.0, 30.0, 30.0), got)
    if not 200 <= len(n_draws) <= 202:
        fail("statistic evaluations for n_boot=200", fed, "200 draws (+ the estimate)",
             len(n_draws))
    got = _call(boot_fn, slices, _whole_studies, n_boot=200, seed=3)
    if got != (1.0, 1.0, 1.0):
        fail("share of study labels holding one whole study (estimate, low, high)", fed,
             (1.0, 1.0, 1.0), tuple(round(v, 3) for v in got))
    once = _call(boot_fn, slices, _mean_score, n_boot=200, seed=11)  # continuous: any other
    again = _call(boot_fn, slices, _mean_score, n_boot=200, seed=11)  # seed moves it
    if once != again:
        fail("result for the same seed twice", f"{fed}, seed=11", once, again)
    # 1000 draws against 4000 of the reference: the solution's percentiles differed from the
    # reference's by at most 0.03 over 15 seeds
    first = _call(boot_fn, slices, study_sensitivity, n_boot=1000, seed=11)
    per = slices.groupby("study").agg(score=("score", "max"), truth=("truth", "max"))
    caught = (per["score"].to_numpy() >= 0.5).astype(float)
    sick = per["truth"].to_numpy() == 1

    def recall(rows):
        mine = sick[rows]
        return float(caught[rows][mine].mean()) if mine.any() else math.nan

    want = helpers.metrics.bootstrap_ci(recall, np.arange(len(per)), n_boot=4000, seed=8)
    if not math.isclose(first[0], want[0], abs_tol=1e-9):
        fail("estimate (the statistic of all slices)", fed, want[0], first[0])
    if not np.allclose(first[1:], want[1:], atol=0.06):
        fail("95 % interval of study-level sensitivity (2.5 and 97.5 percentiles)",
             f"{fed}, n_boot=1000", tuple(round(v, 3) for v in want[1:]),
             tuple(round(v, 3) for v in first[1:]))
    rare = slice_fixture(np.random.default_rng(5), n_studies=12, caught=1, fractured=1)
    got = _call(boot_fn, rare, study_sensitivity, n_boot=300, seed=0)
    if got != (1.0, 1.0, 1.0):
        fail("study-level sensitivity with 1 fractured study in 12 (draws without it are "
             "NaN and left out)", "12 studies, 1 fractured and caught", (1.0, 1.0, 1.0), got)

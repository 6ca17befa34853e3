"""Does the smoke profile's detector learn, offline, on CPU, within a time budget?

For each data set, on the smoke profile's synthetic data (what ``helpers.data.locate()``
generates without real data: 200 pneumonia patients at 256 px; C-spine files of the
profile's size, one per ``--seeds`` seed, 42 being the profile's own), train
the smoke profile's model with the smoke profile's settings (``helpers.env.config()``)
through ``helpers.data`` + ``helpers.transforms`` + ``helpers.engine``, for the profile's
epochs or until the next epoch would overrun the wall-clock budget, then report COCO
AP50 on the synthetic test split via ``helpers.metrics.coco_map``:

* pneumonia: test patients of ``patient_split``; AP50 over the positive patients (the
  notebook's test set) and, for reference, over all test patients;
* C-spine: every slice of split ``test`` (most have no fracture), per file and run seed,
  then the mean and spread over the runs (one test split holds only a few dozen boxes).

Timings depend on what else the machine runs; the report gives steps and s/step too.

    .venv/bin/python bench/bench_learning.py [--budget 90] [--threads 2] [--only cspine]
        [--epochs N] [--seeds 42 1 2] [--run-seeds 0 1 2] [--ema 0.99] [--lr-cut 0.75]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from autograder.reference_datasets import CSpineH5Dataset, PneumoniaDataset
from helpers.data import (
    collate,
    locate,
    patient_split,
    pneumonia_layout,
    read_labels,
)
from helpers.data.synthetic import synth_cspine
from helpers.engine import predict_with_targets, train_one_epoch
from helpers.env import config, seed_everything
from helpers.metrics import coco_map
from helpers.models import build_detector
from helpers.transforms import eval_transforms, train_transforms


def pneumonia_sets(size: int) -> tuple[Dataset, dict[str, Dataset]]:
    """Train set (positive training patients) and the test sets (positives, all)."""
    csv, images = pneumonia_layout(locate("pneumonia").path)
    labels = read_labels(csv)
    split = patient_split(labels, seed=config().seed)
    train = PneumoniaDataset(labels, images, split["train"], transform=train_transforms(size))
    tests = {name: PneumoniaDataset(labels, images, split["test"], positives_only=only,
                                    transform=eval_transforms(size))
             for name, only in (("test positives", True), ("test all", False))}
    return train, tests


def cspine_sets(size: int, path: Path | None = None) -> tuple[Dataset, dict[str, Dataset]]:
    """Train slices and the test slices of the C-spine file (default: the profile's)."""
    path = path or locate("cspine").path
    train = CSpineH5Dataset(path, split="train", transform=train_transforms(size))
    return train, {"test all": CSpineH5Dataset(path, split="test",
                                               transform=eval_transforms(size))}


def run(name: str, budget: float, positive_share: float, epochs: int | None,
        path: Path | None = None, seed: int | None = None,
        ema_decays: tuple[float, ...] = (), lr_cut: float = 0.75) -> dict[str, float]:
    """Train on one data set within ``budget`` seconds, print AP50 on its test sets and
    return them by test set name. ``seed`` (default: the profile's) seeds the run: the
    starting weights, the draws and the augmentations. Each of ``ema_decays`` keeps an
    exponential moving average of the weights, updated after every step, and is tested
    beside the last weights (keys ``"<test set> ema <decay>"``). The learning rate drops
    10x after ``lr_cut`` of the epochs."""
    cfg = config()
    seed_everything(cfg.seed if seed is None else seed)
    if name == "pneumonia":
        train, tests = pneumonia_sets(cfg.image_size)
    else:
        train, tests = cspine_sets(cfg.cspine_image_size, path)
    sampler = None
    if positive_share and isinstance(train, CSpineH5Dataset):
        # Most slices show no fracture: draw positives for `positive_share` of each epoch.
        positive = train.labels[train.indices] == 1
        weights = np.where(positive, positive_share / positive.sum(),
                           (1 - positive_share) / (~positive).sum())
        # As the notebook: an epoch draws at most cfg.max_train_images slices.
        n_draw = min(len(train), cfg.max_train_images or len(train))
        sampler = WeightedRandomSampler(torch.as_tensor(weights), n_draw)
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=sampler is None,
                        sampler=sampler, collate_fn=collate, drop_last=True,
                        num_workers=cfg.num_workers)
    arch = getattr(cfg, f"{name}_arch")
    model = build_detector(arch)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "cspine":  # as the notebooks: AdamW for assignment 2, SGD for assignment 1
        optimizer = torch.optim.AdamW(params, lr=cfg.adamw_lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    emas = {decay: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
            for decay in ema_decays}

    def update_emas(*_) -> None:
        for ema in emas.values():
            ema.update_parameters(model)

    optimizer.register_step_post_hook(update_emas)
    epochs = epochs or getattr(cfg, f"{name}_epochs")
    # As both notebooks: the learning rate drops 10x after `lr_cut` of the epochs (0.75).
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, round(lr_cut * epochs)),
                                                gamma=0.1)
    start = time.perf_counter()
    done, longest = 0, 0.0
    # Start an epoch only if it will end within the budget, judged by the longest so far.
    while done < epochs and time.perf_counter() - start + longest <= budget:
        began = time.perf_counter()
        losses = train_one_epoch(model, loader, optimizer, "cpu", done, cfg.warmup_iters,
                                 progress=False)
        scheduler.step()
        longest = max(longest, time.perf_counter() - began)
        done += 1
    seconds = time.perf_counter() - start
    steps = done * len(loader)
    print(f"\n{name}: {len(train)} training images, {arch}, batch {cfg.batch_size}, "
          f"{type(optimizer).__name__} lr {optimizer.defaults['lr']}")
    print(f"  trained {done}/{epochs} epochs = {steps} steps in {seconds:.0f} s "
          f"({seconds / max(steps, 1):.2f} s/step), last epoch loss {losses['loss']:.3f}")
    ap50 = {}
    weights = {"": model, **{f" ema {decay}": ema.module for decay, ema in emas.items()}}
    for test_name, test in tests.items():
        loader = DataLoader(test, batch_size=8, collate_fn=collate)
        for which, tested in weights.items():
            preds, targets = predict_with_targets(tested, loader, "cpu")
            scores = coco_map(preds, targets)
            n_boxes = sum(len(t["boxes"]) for t in targets)
            ap50[test_name + which] = float(scores["map_50"])
            print(f"  {test_name + which:<15} ({len(test)} images, {n_boxes} boxes): "
                  f"AP50 {scores['map_50']:.3f}  AP50:95 {scores['map']:.3f}  "
                  "(target AP50 >= 0.5)")
    return ap50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=90.0,
                        help="training seconds per data set (default 90)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--epochs", type=int,
                        help="epochs to train (default: the smoke profile's), within --budget")
    parser.add_argument("--only", choices=["pneumonia", "cspine"], help="one data set only")
    parser.add_argument("--positive-share", type=float, default=0.5,
                        help="share of C-spine draws from fractured slices (default 0.5)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2],
                        help="C-spine: seeds of the synthetic files, each of the profile's "
                             "size (default 42 1 2; 42 is the profile's own file)")
    parser.add_argument("--run-seeds", type=int, nargs="+",
                        help="C-spine: train one model per run seed on each file (starting "
                             "weights, draws, augmentations; default: the profile's seed), "
                             "to see how much one run says")
    parser.add_argument("--ema", type=float, nargs="+", default=[],
                        help="C-spine: also test an exponential moving average of the "
                             "weights with each of these decays (e.g. 0.99), same run")
    parser.add_argument("--lr-cut", type=float, default=0.75,
                        help="share of the epochs after which the learning rate drops 10x "
                             "(default 0.75, as the notebooks)")
    args = parser.parse_args()
    os.environ["COURSE_PROFILE"] = "smoke"
    torch.set_num_threads(args.threads)
    for name in [args.only] if args.only else ["pneumonia", "cspine"]:
        if name == "pneumonia":
            run(name, args.budget, args.positive_share, args.epochs)
            continue
        # One test split holds a few dozen boxes: one file says little, so train and test
        # on several files (one model each) and report their mean and spread.
        ap50: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory(prefix="bench-cspine-") as tmp:
            for seed in args.seeds:
                path = synth_cspine(Path(tmp) / f"cspine-seed{seed}.h5",
                                    slices=config().cspine_slices, seed=seed)
                for run_seed in args.run_seeds or [None]:
                    print(f"\ncspine file seed {seed} ({config().cspine_slices} slices)"
                          + (f", run seed {run_seed}" if run_seed is not None else ""), end="")
                    got = run(name, args.budget, args.positive_share, args.epochs, path,
                              run_seed, tuple(args.ema), args.lr_cut)
                    for key, value in got.items():
                        ap50.setdefault(key, []).append(value)
        for key, values in ap50.items():
            print(f"\ncspine {key}, {len(values)} runs (file seeds "
                  f"{' '.join(map(str, args.seeds))}): AP50 mean {np.mean(values):.3f}, "
                  f"min {min(values):.3f}, max {max(values):.3f} (target >= 0.5)", end="")
        print()


if __name__ == "__main__":
    main()

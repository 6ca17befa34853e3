"""The main job on the embedded default: locate (or generate) both data sets, load a batch
from each through the course's datasets, and save a figure of them with their boxes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # the demo runs headless (CI, servers)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from autograder.reference_datasets import CSpineH5Dataset, PneumoniaDataset  # noqa: E402
from helpers import env  # noqa: E402
from helpers.data import (  # noqa: E402
    collate,
    locate,
    patient_split,
    pneumonia_layout,
    read_labels,
)
from helpers.data.hdf5 import read_column, split_indices  # noqa: E402
from helpers.transforms import eval_transforms  # noqa: E402
from helpers.viz import draw_boxes  # noqa: E402


def _first_batch(dataset, batch_size: int, num_workers: int):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers)
    return next(iter(loader))


def run(out_dir: Path, n: int = 4) -> Path:
    """Run the demo and return the path of the saved figure."""
    cfg = env.config()
    env.seed_everything(cfg.seed)
    pneumonia, cspine = locate("pneumonia"), locate("cspine")
    env.print_config()

    csv_path, image_dir = pneumonia_layout(pneumonia.path)
    labels = read_labels(csv_path)
    train_ids = patient_split(labels, seed=cfg.seed)["train"]
    pneu_ds = PneumoniaDataset(labels, image_dir, train_ids, transform=eval_transforms(
        cfg.image_size))
    pneu_images, pneu_targets = _first_batch(pneu_ds, n, cfg.num_workers)

    train = split_indices(cspine.path, "train")
    fractured = train[read_column(cspine.path, "labels")[train] == 1]
    spine_ds = CSpineH5Dataset(cspine.path, indices=fractured[:n] if len(fractured) else train,
                               transform=eval_transforms(cfg.image_size))
    spine_images, spine_targets = _first_batch(spine_ds, n, cfg.num_workers)

    fig, axes = plt.subplots(2, n, figsize=(2.8 * n, 6.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    rows = [("chest X-ray", pneu_images, pneu_targets, pneu_ds.patient_ids),
            ("C-spine CT", spine_images, spine_targets, None)]
    for r, (what, images, targets, ids) in enumerate(rows):
        for c, (img, tgt) in enumerate(zip(images, targets, strict=True)):
            name = ids[int(tgt["image_id"])][:8] if ids else f"slice {int(tgt['image_id'])}"
            draw_boxes(axes[r, c], img, tgt["boxes"], title=f"{what} {name}: "
                       f"{len(tgt['boxes'])} box(es)")
    kind = "synthetic" if pneumonia.synthetic or cspine.synthetic else "real"
    fig.suptitle(f"One batch from each data set ({kind} data, profile {cfg.profile}); "
                 "ground truth: solid green")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "batches.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    boxes = [len(t["boxes"]) for t in pneu_targets + spine_targets]
    print(f"batches: pneumonia {tuple(pneu_images[0].shape)} x{len(pneu_images)}, "
          f"cspine {tuple(spine_images[0].shape)} x{len(spine_images)}, boxes per image "
          f"{boxes}, mean pixel {np.mean([float(i.mean()) for i in pneu_images]):.3f}")
    print(f"figure saved to {path}")
    return path

"""Random-access slice loading from the C-spine HDF5 file, three ways, side by side.

* ``open once``   - CSpineH5Dataset (the Dataset exercise's reference): the file is opened
  once per process.
* ``open per item`` - the same Dataset code, but the file is opened and closed for every
  item (what a naive ``__getitem__`` with ``with h5py.File(...)`` does).
* ``in memory``   - the same Dataset code reading from NumPy arrays already in RAM: the
  upper limit for any file-backed loader.

All three run interleaved in each round over the same random order, so machine noise
hits them alike; the report gives medians over rounds and the ratios between them.

    .venv/bin/python bench/bench_hdf5.py [--slices 1000] [--items 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from autograder.reference_datasets import CSpineH5Dataset
from helpers.data.synthetic import synth_cspine


class PerItemDataset(CSpineH5Dataset):
    """Opens the file for every item: the approach the benchmark compares against."""

    def __getitem__(self, idx):
        with h5py.File(self.path, "r") as f:
            return self.load(f, idx)


class InMemoryDataset(CSpineH5Dataset):
    """Reads the same arrays from RAM: the limit for the file-backed versions."""

    def __init__(self, path, **kwargs):
        super().__init__(path, **kwargs)
        with h5py.File(path, "r") as f:
            self.arrays = {"images": f["images"][()], "bboxes": f["bboxes"][()]}

    def __getitem__(self, idx):
        return self.load(self.arrays, idx)


def seconds_per_item(dataset, order) -> float:
    start = time.perf_counter()
    for i in order:
        dataset[i]
    return (time.perf_counter() - start) / len(order)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=1000, help="slices in the file (1000)")
    parser.add_argument("--items", type=int, default=400, help="random reads per round (400)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = synth_cspine(Path(tmp) / "cspine.h5", slices=args.slices, seed=0)
        datasets = {
            "open once": CSpineH5Dataset(path),
            "open per item": PerItemDataset(path),
            "in memory": InMemoryDataset(path),
        }
        rng = np.random.default_rng(0)
        for ds in datasets.values():  # warm-up: page cache, lazy handle, imports
            seconds_per_item(ds, range(20))
        times = {name: [] for name in datasets}
        for _ in range(args.rounds):
            order = rng.integers(0, args.slices, size=args.items)
            for name, ds in datasets.items():
                times[name].append(seconds_per_item(ds, order))
        with h5py.File(path) as f:
            layout = f"chunks={f['images'].chunks}, compression={f['images'].compression}"

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.slices} slices of 256x256 float32 ({layout}), {args.items} random reads "
          f"x {args.rounds} rounds, file in the page cache")
    print(f"{'loader':<15}{'ms/item (median)':>18}{'items/s':>10}")
    for name, t in med.items():
        print(f"{name:<15}{t * 1e3:>18.3f}{1 / t:>10.0f}")
    print(f"open once vs open per item: {med['open per item'] / med['open once']:.1f}x faster "
          f"(target >= 12x)")
    print(f"open once vs in memory:     {med['in memory'] / med['open once']:.2f} of its speed "
          f"(target >= 0.5)")


if __name__ == "__main__":
    main()

"""``python -m helpers.data synth pneumonia|cspine ...`` writes a synthetic data set;
``python -m helpers.data pack-cspine RSNA2022_DIR OUT.h5`` packs the real C-spine subset."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import h5py
import numpy as np
import pandas as pd

from helpers.data.synthetic import synth_cspine, synth_pneumonia


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m helpers.data``."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.data",
        description="Course data tools. 'synth' writes synthetic stand-ins in the real formats.")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="write a synthetic data set (same seed, same bytes)")
    kinds = synth.add_subparsers(dest="kind", required=True)
    pneu = kinds.add_parser("pneumonia", help="RSNA pneumonia folder: labels.csv, "
                            "detailed_class_info.csv, images/<patientId>.dcm")
    pneu.add_argument("out_dir", help="folder to write (created if missing)")
    pneu.add_argument("--patients", type=int, default=200,
                      help="number of patients, about 22%% positive (default: 200)")
    pneu.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    pneu.add_argument("--size", type=int, default=1024,
                      help="image side in pixels, as the real files (default: 1024)")
    pneu.add_argument("--uncompressed", action="store_true",
                      help="raw pixels (Explicit VR Little Endian) instead of JPEG Baseline, "
                           "the real files' encoding (default: JPEG)")
    spine = kinds.add_parser("cspine", help="C-spine HDF5 file: images, bboxes, labels, split, "
                             "StudyInstanceUID, SliceNumber")
    spine.add_argument("out", help="HDF5 file to write (its folder is created if missing)")
    spine.add_argument("--slices", type=int, default=300,
                       help="number of CT slices, cut into studies of 20-40 (default: 300)")
    spine.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    spine.add_argument("--size", type=int, default=256,
                       help="slice side in pixels (default: 256)")
    pack = commands.add_parser(
        "pack-cspine", help="build the course's C-spine HDF5 subset from the RSNA 2022 "
        "competition files (train_images/, train_bounding_boxes.csv, train.csv)")
    pack.add_argument("competition_dir", help="the competition folder (about 340 GB)")
    pack.add_argument("out", help="HDF5 file to write (OUT.partial until complete; an "
                      "interrupted run resumes when started again with the same arguments)")
    pack.add_argument("--seed", type=int, default=42,
                      help="seed of the study split and the negative sampling (default: 42)")
    pack.add_argument("--size", type=int, default=256, help="slice side in pixels (default: 256)")
    pack.add_argument("--negatives-per-positive", type=int, default=3,
                      help="negative slices sampled per positive slice in each split "
                           "(default: 3)")
    pack.add_argument("--window", choices=["bone"], default=None,
                      help="'bone': Hounsfield units through RescaleSlope/Intercept and a bone "
                           "window (level 400, width 1800) instead of the raw pixels min-max "
                           "scaled per slice (default: min-max, as the published file)")
    pack.add_argument("--study-fractured", action="store_true",
                      help="add a per-slice 'study_fractured' column from train.csv "
                           "(patient_overall) (default: off, as the published file)")
    return parser


def _pack(args) -> None:
    from helpers.data.cspine_pack import pack_cspine

    out = pack_cspine(args.competition_dir, args.out, size=args.size,
                      negatives_per_positive=args.negatives_per_positive, seed=args.seed,
                      window=args.window, study_fractured=args.study_fractured)
    with h5py.File(out, "r") as f:
        labels, split = f["labels"][()], f["split"][()]
    counts = ", ".join(f"{name} {int(np.sum(split == code))}"
                       for code, name in enumerate(("train", "val", "test")))
    print(f"wrote {out}: {len(labels)} slices ({int(labels.sum())} with boxes; {counts})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "pack-cspine":
            _pack(args)
        elif args.kind == "pneumonia":
            out = synth_pneumonia(args.out_dir, patients=args.patients, seed=args.seed,
                                  size=args.size, compress=not args.uncompressed)
            labels = pd.read_csv(out / "labels.csv")
            boxes = labels[labels["Target"] == 1]
            encoding = "raw" if args.uncompressed else "JPEG"
            print(f"wrote {out}: {labels['patientId'].nunique()} patients, "
                  f"{boxes['patientId'].nunique()} positive, {len(boxes)} boxes, "
                  f"{args.size} px {encoding} DICOMs")
        else:
            out = synth_cspine(args.out, slices=args.slices, seed=args.seed, size=args.size)
            with h5py.File(out, "r") as f:
                n, positive = len(f["labels"]), int(np.sum(f["labels"][()]))
                studies = len(set(f["StudyInstanceUID"][()]))
            print(f"wrote {out}: {n} slices, {positive} with a fracture, {studies} studies, "
                  f"{args.size} px")
    except ValueError as err:  # bad sizes, counts or input files: say so like argparse does
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    sys.exit(main())

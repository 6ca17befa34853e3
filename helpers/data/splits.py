"""Patient-wise splits: no patient (or CT study) may sit in two splits.

Images of one patient are correlated; splitting by image lets the model be tested on
patients it has already seen, and the test score then overstates what it would do on
new patients.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

__all__ = ["patient_split"]

def patient_split(
    labels: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    seed: int = 42,
) -> dict[str, list[str]]:
    """Split patientIds into train/val/test, stratified by whether a patient has a lesion."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"fractions={fractions}; expected three positive numbers summing to 1")
    patients = labels.groupby("patientId", sort=True)["Target"].max()
    ids, target = patients.index.to_numpy(), patients.to_numpy()
    strat = target if min(target.sum(), len(target) - target.sum()) >= 3 else None
    train, rest, _, rest_y = train_test_split(
        ids, target, train_size=fractions[0], random_state=seed, stratify=strat
    )
    val_share = fractions[1] / (fractions[1] + fractions[2])
    strat = rest_y if min(rest_y.sum(), len(rest_y) - rest_y.sum()) >= 2 else None
    val, test = train_test_split(rest, train_size=val_share, random_state=seed, stratify=strat)
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}

"""Quality control: look at the worst mistakes, one box at a time.

Metrics say *how often* a detector is wrong; looking at the mistakes says *why*. Two
lists are worth opening before trusting any number:

* **Hardest false positives**: the most confident boxes that match no lesion. Often they
  sit on something real (a nipple shadow, a pacemaker lead, a lesion the annotator
  missed) or they are a second box on an already-found lesion (a high ``best_iou``
  with a ground-truth box means a duplicate or a poorly placed box, not a hallucination).
* **Missed lesions**: ground-truth boxes no prediction above the threshold found. Listed
  largest first, because a large missed lesion is the most surprising (and the most
  clinically costly) miss; ``best_score`` tells whether the model saw it but scored it
  under the threshold, ``best_iou`` whether its box was just misplaced.

Matching is ``helpers.matching.match_image`` (score order, IoU >= threshold,
each lesion at most once). ``best_iou`` is the highest IoU with any box, any label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from helpers.matching import image_pairs, match_image
from helpers.metrics import box_iou

__all__ = ["hardest_false_positives", "missed_lesions"]


def _ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _image_id(target: Mapping, index: int):
    image_id = target.get("image_id", index)
    return image_id.item() if hasattr(image_id, "item") else image_id


def hardest_false_positives(preds: Sequence[Mapping], targets: Sequence[Mapping], k: int = 5,
                            iou_thresh: float = 0.5) -> list[dict]:
    """The k most confident predictions that match no ground-truth box, most confident first."""
    rows = []
    for i, p, t in image_pairs(preds, targets):
        (pb, ps, pl), gb = p, t[0]
        m = match_image(p, t, iou_thresh, score_thresh=-np.inf)
        fp = m.order[~m.is_tp]
        ious = _ious(pb[fp], gb)
        for n, j in enumerate(fp):
            rows.append({"image": i, "image_id": _image_id(targets[i], i),
                         "box": pb[j].tolist(), "score": float(ps[j]), "label": int(pl[j]),
                         "best_iou": float(ious[n].max()) if len(gb) else 0.0})
    rows.sort(key=lambda r: -r["score"])
    return rows[:k]


def missed_lesions(preds: Sequence[Mapping], targets: Sequence[Mapping],
                   score_thresh: float = 0.5, iou_thresh: float = 0.5,
                   k: int | None = None) -> list[dict]:
    """Ground-truth boxes no prediction >= score_thresh matched, largest first (k=None: all)."""
    rows = []
    for i, p, t in image_pairs(preds, targets):
        (pb, ps, _), (gb, _, gl) = p, t
        m = match_image(p, t, iou_thresh, score_thresh)
        ious = _ious(gb, pb)  # against every prediction, whatever its score
        for j in np.flatnonzero(~m.detected):
            overlap = ious[j] > 0
            rows.append({"image": i, "image_id": _image_id(targets[i], i),
                         "box": gb[j].tolist(), "label": int(gl[j]),
                         "area": float(np.prod(gb[j, 2:] - gb[j, :2])),
                         "best_score": float(ps[overlap].max()) if overlap.any() else None,
                         "best_iou": float(ious[j].max()) if len(pb) else 0.0})
    rows.sort(key=lambda r: -r["area"])
    return rows if k is None else rows[:k]

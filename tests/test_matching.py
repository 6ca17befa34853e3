import numpy as np
import pytest
import torch

from helpers import matching


def test_greedy_match_is_score_ordered_and_strict_only_when_asked():
    # rows already in score order: both overlap box 0, the first (higher score) takes it
    ious = np.array([[0.5, 0.0], [0.9, 0.2]])
    matched, iou = matching.greedy_match(ious, 0.5)
    assert matched.tolist() == [0, -1] and iou.tolist() == [0.5, 0.0]
    matched, _ = matching.greedy_match(ious, 0.5, strict=True)  # the RSNA rule: IoU > t
    assert matched.tolist() == [-1, 0]
    with pytest.raises(ValueError, match="outside"):
        matching.greedy_match(ious, 0.0)


def test_match_image_keeps_tied_scores_in_input_order_and_labels_apart():
    pred = matching.box_set({"boxes": torch.tensor([[0.0, 0, 10, 10]] * 3),
                             "scores": torch.tensor([0.5, 0.5, 0.9]),
                             "labels": torch.tensor([1, 1, 2])}, "pred", scored=True)
    gt = matching.box_set({"boxes": torch.tensor([[0.0, 0, 10, 10]])}, "gt", scored=False)
    m = matching.match_image(pred, gt, iou_thresh=0.5)
    assert m.order.tolist() == [2, 0, 1]  # label 2 first by score, then the tie in order
    assert m.is_tp.tolist() == [False, True, False]  # label 2 never matches a label-1 box
    assert (m.tp, m.fp, m.fn) == (1, 2, 0)


def test_image_pairs_names_the_image_at_fault():
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        list(matching.image_pairs([{}], [{}, {}]))
    with pytest.raises(KeyError, match=r"predictions\[0\] has no 'scores'"):
        list(matching.image_pairs([{"boxes": []}], [{"boxes": []}]))

import pytest
import torch
import torchvision.ops
from torchvision.ops import box_iou as imported_early

from autograder.tripwire import run_without, tripwires
from helpers import metrics

FORBIDDEN = {"torchvision.ops.box_iou": torchvision.ops.box_iou,
             "helpers.metrics.box_iou": metrics.box_iou}
A = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
B = torch.tensor([[1.0, 1.0, 3.0, 3.0]])


def own_iou(a, b):
    lt, rb = torch.max(a[:, None, :2], b[:, :2]), torch.min(a[:, None, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b) - inter)


@pytest.mark.parametrize("cheat", [
    lambda a, b: torchvision.ops.box_iou(a, b),
    lambda a, b: imported_early(a, b),  # bound before any patching could happen
    lambda a, b: metrics.box_iou(a, b),  # through the helpers' wrapper
])
def test_tripwire_fires_however_the_reference_is_reached(cheat):
    with pytest.raises(AssertionError, match="calls .*box_iou; the exercise is to write"):
        run_without(cheat, FORBIDDEN, A, B)


def test_own_code_passes_and_returns_its_result():
    got = run_without(own_iou, FORBIDDEN, A, B)
    torch.testing.assert_close(got, torchvision.ops.box_iou(A, B))


def test_the_hook_is_removed_afterwards():
    import sys

    with tripwires(FORBIDDEN) as fired:
        pass
    assert fired == [] and sys.getprofile() is None


def test_a_forbidden_module_covers_its_private_functions():
    import torchvision.ops.boxes

    whole = {"torchvision.ops.boxes": torchvision.ops.boxes}
    with pytest.raises(AssertionError, match=r"calls torchvision\.ops\.boxes\._box_inter_union\b"):
        run_without(lambda a, b: torchvision.ops.boxes._box_inter_union(a, b)[0], whole, A, B)
    with pytest.raises(AssertionError, match=r"calls torchvision\.ops\.boxes\.box_iou, "):
        run_without(lambda a, b: imported_early(a, b), whole, A, B)
    torch.testing.assert_close(run_without(own_iou, whole, A, B), torchvision.ops.box_iou(A, B))


def test_a_forbidden_module_covers_methods_and_properties():
    from helpers import matching

    whole = {"helpers.matching": matching}
    pred, target = {"boxes": A, "scores": torch.ones(1)}, {"boxes": B}
    m = metrics.match_detections(pred, target)
    with pytest.raises(AssertionError, match=r"calls helpers\.matching\.MatchResult\.fp;"):
        run_without(lambda: m.fp, whole)
    with pytest.raises(AssertionError, match=r"calls helpers\.matching\.box_set, "):
        run_without(metrics.match_detections, whole, pred, target)


def _profiler_off(a, b):
    import sys

    sys.setprofile(None)
    return torchvision.ops.box_iou(a, b)


def _in_a_thread(a, b):
    import threading

    found = []
    worker = threading.Thread(target=lambda: found.append(imported_early(a, b)))
    worker.start()
    worker.join()
    return found[0] if found else own_iou(a, b)  # the guard's error dies with the thread


@pytest.mark.parametrize("evasion", [_profiler_off, _in_a_thread])
def test_the_profiler_alone_misses_a_switched_off_hook_and_a_thread(evasion):
    """What the notebook's kernel runs: both evasions get through (the re-check exists)."""
    torch.testing.assert_close(run_without(evasion, FORBIDDEN, A, B),
                               torchvision.ops.box_iou(A, B))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("evasion", [_profiler_off, _in_a_thread])
def test_guards_catch_them_and_are_taken_out_afterwards(evasion, monkeypatch):
    """What the re-check process runs (`guard_every_thread`)."""
    from autograder import tripwire

    monkeypatch.setitem(tripwire._GUARD, "on", True)
    with pytest.raises(AssertionError, match=r"calls torchvision\.ops\.box_iou|calls helpers"):
        run_without(evasion, FORBIDDEN, A, B)
    torch.testing.assert_close(run_without(own_iou, FORBIDDEN, A, B),
                               torchvision.ops.box_iou(A, B))
    torch.testing.assert_close(imported_early(A, B), own_iou(A, B))  # the real code is back


def test_a_guard_fits_a_function_with_closure_cells(monkeypatch):
    from autograder import tripwire

    def make(k):
        def scaled(x):
            return x * k
        return scaled

    times3 = make(3)
    monkeypatch.setitem(tripwire._GUARD, "on", True)
    with pytest.raises(AssertionError, match="calls times3"):
        run_without(lambda: times3(2), {"times3": times3})
    assert times3(2) == 6

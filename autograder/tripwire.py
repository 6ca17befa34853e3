"""Tripwires: did the student's function call the reference it was asked to write?

Where ``helpers`` (or torchvision / scikit-learn) already has the function an exercise asks
for, the hidden check runs the student's function while watching for calls into those
references. A profiler hook sees every Python-level call by its code object, so it fires
however the function was reached: ``helpers.metrics.box_iou``, ``from torchvision.ops
import box_iou as f``, a lambda around it, or a call from a helper of the student's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _code_of(func: Callable):
    func = getattr(func, "__wrapped__", func)
    func = getattr(func, "__func__", func)  # bound methods
    code = getattr(func, "__code__", None)
    if code is None:
        raise TypeError(f"{func!r} has no Python code object to watch")
    return code


@contextmanager
def tripwires(forbidden: dict[str, Callable]) -> Iterator[list[str]]:
    """Watch calls to ``forbidden`` (name -> function); yields the names that were called."""
    watched = {_code_of(f): name for name, f in forbidden.items()}
    fired: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in watched:
            name = watched[frame.f_code]
            if name not in fired:
                fired.append(name)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield fired
    finally:
        sys.setprofile(previous)


def run_without(func: Callable, forbidden: dict[str, Callable], *args, **kwargs):
    """Call ``func`` and fail the check if it used any of the ``forbidden`` references."""
    with tripwires(forbidden) as fired:
        result = func(*args, **kwargs)
    if fired:
        raise AssertionError(
            f"{getattr(func, '__name__', 'your function')} calls {', '.join(fired)}; the "
            "exercise is to write this step yourself (see the exercise's list of calls "
            "that are off limits)"
        )
    return result

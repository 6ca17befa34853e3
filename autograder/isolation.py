"""Hidden checks record their calls, so the grader can run them again outside the notebook.

In the student's kernel a check shares the process with the code it tests: an earlier cell
can replace the check, and the student's function can switch off the tripwire's profiler or
call the reference from another thread. So every public ``check_*`` function is wrapped in
`recorded`: under nbgrader's autograde it first publishes what it was called with
(``cloudpickle``, which copies notebook-defined functions and classes by value) as a
display_data output of type `MIME`, then runs as before. The worker collects those records
from the executed notebook and `autograder.recheck` runs the same check on the same
arguments in a fresh process (`course.recheck`); the in-kernel result is only a first
opinion. A check replaced by an earlier cell records nothing, and that costs its cell.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Callable

__all__ = ["MIME", "recorded", "record_calls"]

MIME = "application/vnd.medical-detection-course.check-call+json"
_state = {"depth": 0, "recording": True}


def record_calls(on: bool) -> None:
    """Switch recording on or off (the re-check process runs the checks without it)."""
    _state["recording"] = on


def _publish(name: str, args: tuple, kwargs: dict) -> None:
    """One display_data output: the check's name and its pickled arguments, or why they
    could not be pickled (the worker then fails the cell and says so)."""
    import cloudpickle
    from IPython.display import publish_display_data

    record = {"check": name}
    try:
        record["call"] = base64.b64encode(cloudpickle.dumps((args, kwargs))).decode("ascii")
    except Exception as err:  # noqa: BLE001 - any pickling failure is reported, not raised
        record["error"] = f"{type(err).__name__}: {err}"[:300]
    publish_display_data({MIME: record})


def _recording() -> bool:
    # Only under `nbgrader autograde`, and only the outermost check (a check may call another).
    return (_state["recording"] and _state["depth"] == 0
            and os.environ.get("NBGRADER_EXECUTION") == "autograde")


def recorded(check: Callable) -> Callable:
    """Wrap a hidden check: record its call (see the module's docstring), then run it."""

    @functools.wraps(check)
    def call(*args, **kwargs):
        if _recording():
            _publish(check.__name__, args, kwargs)
        _state["depth"] += 1
        try:
            return check(*args, **kwargs)
        finally:
            _state["depth"] -= 1

    call.recorded_check = True
    return call

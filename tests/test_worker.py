"""What a failed autograde's row says: the named run failure, not a line of student code."""

from nbclient.exceptions import CellTimeoutError
from nbformat.v4 import new_code_cell

from course.worker import failure_reason

# An 11-line cell: nbclient quotes its first and last five lines in the timeout message.
CELL = new_code_cell("import os, time\nfirst = os.getpid()\ntry:\n    while True:\n"
                     "        try:\n            os.fork()\n        except OSError:\n"
                     "            time.sleep(0.05)\nfinally:\n    if os.getpid() != first:\n"
                     "        os._exit(0)")


def test_a_late_timeout_is_named_not_the_quoted_cell():
    # The message nbclient itself raises when the interrupted kernel's output is late.
    err = CellTimeoutError.error_from_timeout_and_cell("Timeout waiting for IOPub output", 4,
                                                       CELL)
    log = ("[AutogradeApp | ERROR] There was an error processing assignment: /x\n"
           f"Traceback (most recent call last):\n  File \"...\"\n"
           f"nbclient.exceptions.CellTimeoutError: {err}\n"
           "[AutogradeApp | ERROR] Please see the error log")
    assert "except OSError" in log  # the quoted cell is in the log ...
    reason = failure_reason(log)
    assert reason.startswith("CellTimeoutError") and "OSError" not in reason  # ... not the row


def test_other_failures_keep_their_most_specific_line():
    err = CellTimeoutError.error_from_timeout_and_cell("x", 4, CELL)
    log = f"ValueError: the notebook is not JSON\n{err}"  # the message, without the name
    assert failure_reason("ValueError: the notebook is not JSON\nPlease see the log") == (
        "autograde failed: ValueError: the notebook is not JSON")
    assert "OSError" not in failure_reason(log)  # a quoted cell never names the failure
    assert "kernel died" in failure_reason("nbclient.exceptions.DeadKernelError: Kernel died")

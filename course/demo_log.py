"""The demo's terminal shows its own lines: third-party warnings and log records go to a file.

Scoped to the demo and undone on exit: Python warnings (SQLAlchemy's, torch's, ...) are
captured into logging, and a handler on the root logger writes every record that
propagates there (nbgrader's, through the "traitlets" logger; jupyter_client's) to one file.
The demo also hands that file to the notebook kernels as their stdout and stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def library_output_to(log_file: Path) -> Iterator[IO]:
    """Route warnings and library logging to LOG_FILE while the block runs; yield the file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    # With a handler on the root logger, logging's last resort (print WARNING+ to stderr
    # when no handler exists) no longer fires.
    root.addHandler(handler)
    logging.captureWarnings(True)  # warnings -> the "py.warnings" logger -> the file
    try:
        yield handler.stream
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()

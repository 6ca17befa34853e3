"""Where each data set of this process came from: the record ``print_config`` reads.

``helpers.data.sources.locate`` records every data set it finds here, and
``helpers.env.print_config`` lists them. The record lives in its own module so that ``env``
can report the data without importing ``helpers.data`` (which imports ``env``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DataSource", "located", "record"]

_located: dict[str, DataSource] = {}


@dataclass(frozen=True)
class DataSource:
    """Where one data set came from."""

    name: str  # "pneumonia" or "cspine"
    path: Path  # the folder (pneumonia) or the .h5 file (cspine)
    synthetic: bool
    origin: str

    def describe(self) -> str:
        """One line for print_config()."""
        if self.synthetic:
            return f"{self.name}: SYNTHETIC data at {self.path} ({self.origin})"
        return f"{self.name}: data at {self.path} (from {self.origin})"


def record(source: DataSource) -> None:
    """Remember ``source`` as the data set of its name (a later one replaces it)."""
    _located[source.name] = source


def located() -> list[DataSource]:
    """The data sets located so far in this process."""
    return list(_located.values())

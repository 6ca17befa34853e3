"""Shared fixtures. Every test runs offline and against its own caches:

* sockets may only reach this machine (loopback, Unix sockets): a test that tries the
  network fails loudly instead of passing on a machine that happens to be online;
* torch's hub cache and the course's data cache point at fresh empty folders, so no test
  leans on weights or data that a previous run left behind;
* the real-data variables are unset, so a developer's own data never leaks into a test.

`one_thread` (opt-in, per module) keeps torch to one intra-op thread.
"""

from __future__ import annotations

import ipaddress
import os
import socket

# Before anything imports albumentations: its import-time update check is a network call.
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

import pytest

from helpers.data.synthetic import synth_cspine, synth_pneumonia

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        if not local:
            raise RuntimeError(f"test tried to reach the network: {address}")
    return _real_connect(self, address)


# The two longest modules (about 8 and 9 minutes in one process, `pytest --durations`).
LONGEST = ("test_grade_scale.py", "test_notebooks.py")


def pytest_collection_modifyitems(items):
    """With two workers (make test) the longest modules start at once, then the other slow
    ones and the quick ones fill the gaps; alphabetically, a notebook module started late
    and ran alone for minutes at the end."""
    items.sort(key=lambda item: (item.path.name not in LONGEST,
                                 item.get_closest_marker("slow") is None))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network, empty caches, no real-data variables, no inherited profile."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path_factory.mktemp("course_data")))
    for var in ("RSNA_PNEUMONIA_DIR", "CSPINE_H5", "COURSE_PROFILE", "NBGRADER_EXECUTION"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def pneumonia_dir(tmp_path_factory):
    """A small synthetic RSNA pneumonia folder (summer-school layout, JPEG DICOMs)."""
    return synth_pneumonia(tmp_path_factory.mktemp("pneumonia") / "rsna", patients=40, seed=0,
                           size=256)


@pytest.fixture(scope="session")
def cspine_h5(tmp_path_factory):
    """A small synthetic C-spine HDF5 file."""
    return synth_cspine(tmp_path_factory.mktemp("cspine") / "cspine.h5", slices=120, seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core box, OpenMP threads spinning against other
    processes made small forward/backward passes several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

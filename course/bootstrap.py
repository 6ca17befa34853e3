"""Create or reuse `.venv` at the repository root and install the course into it.

Run with any `python3` (standard library only): `python3 course/bootstrap.py`.
The Makefile calls it before every target, so it must be quick when nothing changed:
it stamps the venv with a hash of what it installed and returns at once on a match.

Machine-specific torch pins live here and only here. The project's own requirements
are ranges, so Colab (which brings its own torch) is never forced to reinstall torch.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".course-installed"

# pip on this kind of machine finds these wheels on local disk; on x86_64 the CPU-only
# torch 2.13 wheel breaks PyPI's torchvision, so the pair is pinned together.
TORCH_PINS = {
    "x86_64": ["torch==2.14.1", "torchvision==0.29.1"],
    "aarch64": ["torch==2.9.1", "torchvision==0.24.1"],
}


def venv_python() -> Path:
    """Path of the venv's interpreter."""
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def pins() -> list[str]:
    """Torch pins for this machine; COURSE_TORCH_PINS='' (or a list) overrides."""
    override = os.environ.get("COURSE_TORCH_PINS")
    if override is not None:
        return override.split()
    return TORCH_PINS.get(platform.machine(), [])


def fingerprint(pin_list: list[str]) -> str:
    """Hash of everything that decides what gets installed."""
    h = hashlib.sha256()
    h.update((ROOT / "pyproject.toml").read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(" ".join(pin_list).encode())
    return h.hexdigest()


def pip(*args: str) -> None:
    """Run the venv's pip, failing loudly."""
    cmd = [str(venv_python()), "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def ensure_bwrap() -> None:
    """bubblewrap for the grading sandbox (`course/sandbox.py`): installed from Debian's
    package when it is missing and this is root on Debian or Ubuntu; otherwise left to the
    instructor (the sandbox tests then skip and say how, unless CI is set)."""
    if shutil.which("bwrap") or not sys.platform.startswith("linux") or os.geteuid() != 0:
        return
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return
    print("Installing bubblewrap (Debian package) for the grading sandbox", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    install = ["apt-get", "install", "-y", "-q", "bubblewrap"]
    if subprocess.run(install, **quiet).returncode:
        subprocess.run(["apt-get", "update", "-q"], **quiet)  # a fresh image has no lists
        if subprocess.run(install, **quiet).returncode:
            # Not fatal here: the venv is still built; grading says which sandbox is missing.
            print("Could not install bubblewrap (apt-get failed); `course grade` will use "
                  "the unshare sandbox as root, and the bwrap tests will say so", flush=True)


def main() -> int:
    ensure_bwrap()
    pin_list = pins()
    want = fingerprint(pin_list)
    if venv_python().exists() and STAMP.exists() and STAMP.read_text().strip() == want:
        return 0
    if not venv_python().exists():
        print(f"Creating {VENV} with {sys.executable}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if pin_list:
        pip("install", "--quiet", *pin_list)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(pin_list) + "\n")
        constraints = f.name
    try:
        # The constraints keep the resolver from swapping the pinned torch for another.
        pip("install", "--quiet", "-c", constraints, "-e", ".[dev]")
    finally:
        os.unlink(constraints)
    STAMP.write_text(want + "\n")
    print(f"Environment ready: {venv_python()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

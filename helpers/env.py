"""Where am I running, and how big may the run be? Profiles, device, seeding, versions.

One notebook serves three sizes of run. `profile()` names the size and `config()`
returns every size the notebooks read, so no notebook cell branches on the environment:

* ``full``  - a GPU (Colab): real data when found, COCO-pretrained weights.
* ``smoke`` - CI or any machine without a GPU: small synthetic data, a few CPU minutes.
* ``grade`` - under nbgrader (autograde/validate): tiny data, seconds per test cell.

Precedence: ``COURSE_PROFILE`` > ``NBGRADER_EXECUTION`` > ``CI`` or no GPU > GPU.
"""

from __future__ import annotations

import os
import platform
import random
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from helpers.provenance import located

__all__ = ["PROFILES", "SMALL_ARCH", "Config", "config", "device", "helpers_version", "in_colab",
           "print_config", "profile", "seed_everything"]

PROFILES = ("smoke", "grade", "full")


@dataclass(frozen=True)
class Config:
    """Every size a notebook uses, for one profile."""

    profile: str
    seed: int
    pneumonia_patients: int  # synthetic patients generated when the real set is absent
    pneumonia_px: int  # side of the synthetic DICOMs (the real ones are 1024)
    cspine_slices: int  # synthetic CT slices generated when the real file is absent
    image_size: int  # side of the images fed to the model
    batch_size: int
    num_workers: int
    # The models (helpers.models.build_detector) and their training (helpers.engine.fit).
    pneumonia_arch: str  # assignment 1's detector
    cspine_arch: str  # assignment 2's detector
    pneumonia_epochs: int
    cspine_epochs: int
    max_train_images: int | None  # cap on training images per epoch (None: all of them)
    lr: float  # SGD learning rate for batch_size images per step (assignment 1)
    adamw_lr: float  # AdamW learning rate (assignment 2; fine-tuning uses a tenth of it)
    momentum: float
    weight_decay: float
    warmup_iters: int  # linear learning-rate warm-up over the first iterations
    patience: int | None  # early stopping after this many epochs without improvement
    # Assignment 2's input side. The C-spine slices are stored at 256 px; upsampling them
    # (as image_size would in `full`) adds no information. It would make the anchors and the
    # feature stride smaller relative to a fracture, which can help small ones, at about 4x
    # the compute: a trade-off to try on purpose, not a default.
    cspine_image_size: int


SMALL_ARCH = "fasterrcnn_small"  # a CPU-sized detector trained from random init

_CONFIGS = {
    # A Colab T4 within about an hour per notebook: COCO-pretrained ResNet-50 FPN models at
    # 512 px (the C-spine slices at their stored 256), a few thousand images per epoch.
    "full": Config("full", 42, 2000, 1024, 3000, 512, 8, 2,
                   pneumonia_arch="fasterrcnn_resnet50_fpn_v2",
                   cspine_arch="fasterrcnn_resnet50_fpn", pneumonia_epochs=8, cspine_epochs=8,
                   max_train_images=3000, lr=0.01, adamw_lr=1e-4, momentum=0.9,
                   weight_decay=1e-4, warmup_iters=200, patience=3, cspine_image_size=256),
    # On 2 CPU cores a step of the small detector takes 0.14-0.16 s (bench/README.md):
    # pneumonia 24 epochs of ~31 images (168 steps, ~26 s); C-spine 16 epochs of 150 draws
    # from ~420 training slices (592 steps, 83-90 s). 600 C-spine slices give ~40 fractured
    # training studies and a test split of ~20 boxes. At this budget the number of images
    # seen is what the C-spine AP50 depends on (bench/README.md).
    "smoke": Config("smoke", 42, 200, 256, 600, 256, 4, 0,
                    pneumonia_arch=SMALL_ARCH, cspine_arch=SMALL_ARCH, pneumonia_epochs=24,
                    cspine_epochs=16, max_train_images=150, lr=0.02, adamw_lr=1e-3,
                    momentum=0.9, weight_decay=1e-4, warmup_iters=30, patience=None,
                    cspine_image_size=256),
    # Seconds: the grading tests check code, never how well a model learned.
    "grade": Config("grade", 42, 24, 128, 60, 128, 2, 0,
                    pneumonia_arch=SMALL_ARCH, cspine_arch=SMALL_ARCH, pneumonia_epochs=1,
                    cspine_epochs=1, max_train_images=4, lr=0.01, adamw_lr=1e-3,
                    momentum=0.9, weight_decay=1e-4, warmup_iters=0, patience=None,
                    cspine_image_size=128),
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def profile() -> str:
    """Name the run's profile: 'smoke', 'grade' or 'full'."""
    explicit = os.environ.get("COURSE_PROFILE", "").strip().lower()
    if explicit:
        if explicit not in PROFILES:
            raise ValueError(f"COURSE_PROFILE={explicit!r}; expected one of {', '.join(PROFILES)}")
        return explicit
    if os.environ.get("NBGRADER_EXECUTION"):
        return "grade"
    if _flag("CI") or not torch.cuda.is_available():
        return "smoke"
    return "full"


def config(name: str | None = None) -> Config:
    """The frozen settings of the profile ``name`` (default: the current profile)."""
    if name is not None and name not in PROFILES:
        raise ValueError(f"profile {name!r}; expected one of {', '.join(PROFILES)}")
    return _CONFIGS[profile() if name is None else name]


def device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 42) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def in_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


_PACKAGES = (
    "torch", "torchvision", "albumentations", "pydicom", "h5py", "grad-cam",
    "scikit-learn", "numpy", "pandas", "pycocotools",
)


def _version(dist: str) -> str:
    if dist == "torch":  # the local tag (+cu130, +cpu) says which build this is
        return torch.__version__
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def helpers_version() -> str:
    """Version and distribution of the ``helpers`` imported here: the student bundle
    (medical-detection-helpers) in Colab, the course repository in development."""
    here = Path(__file__).resolve().parent
    dists = sorted(set(metadata.packages_distributions().get("helpers", [])))
    for name in dists:  # the distribution whose installed files are this very package
        dist = metadata.distribution(name)
        if any(Path(dist.locate_file(f)).resolve().parent == here for f in dist.files or []
               if f.name == "__init__.py" and f.parts[:1] == ("helpers",)):
            return f"{dist.version} ({name})"
    if len(dists) == 1:  # an editable install lists a path hook, not the package's files
        return f"{metadata.version(dists[0])} ({dists[0]}, editable)"
    return f"not installed as a package: imported from {here}"


def print_config() -> None:
    """Print versions, device, profile and where each data set came from."""
    dev = device()
    gpu = f" ({torch.cuda.get_device_name(0)})" if dev.type == "cuda" else ""
    lines = [f"python         {platform.python_version()} on {platform.machine()}"]
    lines += [f"{name:<14} {_version(name)}" for name in _PACKAGES]
    lines.append(f"helpers        {helpers_version()}")
    lines += [f"device         {dev}{gpu}", f"colab          {in_colab()}"]
    cfg = asdict(config())
    lines.append("profile        " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    sources = located()
    if not sources:
        lines.append("data           none located yet (helpers.data.locate)")
    for src in sources:
        lines.append(f"data           {src.describe()}")
    print("\n".join(lines))

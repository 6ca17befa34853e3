"""One Faster R-CNN training step on 256 px images: torchvision's input sizes vs the course's.

torchvision's ``FasterRCNN`` resizes every image so its short side is ``min_size=800``
(long side at most ``max_size=1333``): the old notebooks fed it 256 px C-spine slices,
which it upsampled to 800 px. The course builds the model with ``min_size=max_size=256``,
the data's own resolution. Same architecture (ResNet-50 FPN, random init), same weights,
same batch; the variants alternate within each round, so machine noise hits them alike.
A third variant also samples 128 RoIs per image for the box head instead of torchvision's
512 (``box_batch_size_per_image``): at 256 px that fixed per-RoI cost (RoIAlign backward,
the 12544x1024 fully connected layer) is about half of the step on a CPU.

    .venv/bin/python bench/bench_train_step.py [--rounds 3] [--batch 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from helpers.models import build_detector


def batch(n: int, size: int, seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """n random images with two lesion boxes each."""
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    boxes = torch.tensor([[40.0, 60.0, 90.0, 130.0], [150.0, 120.0, 175.0, 150.0]])
    targets = [{"boxes": boxes.clone(), "labels": torch.ones(2, dtype=torch.int64)}
               for _ in range(n)]
    return images, targets


def train_step(model, optimizer, images, targets) -> float:
    """Seconds for one forward + backward + optimizer step."""
    start = time.perf_counter()
    loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--batch", type=int, default=2, help="images per step (default 2)")
    parser.add_argument("--size", type=int, default=256, help="image side (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--arch", default="fasterrcnn_resnet50_fpn",
                        help="detector (default fasterrcnn_resnet50_fpn)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("COURSE_PROFILE", "smoke")  # random init, never a download
    variants = {"torchvision default (800/1333)": dict(min_size=800, max_size=1333),
                f"course ({args.size}/{args.size})": dict(min_size=args.size,
                                                          max_size=args.size),
                f"course ({args.size}), 128 RoIs": dict(min_size=args.size, max_size=args.size,
                                                        box_batch_size_per_image=128)}
    torch.manual_seed(0)
    models = {name: build_detector(args.arch, pretrained=False, **kw)
              for name, kw in variants.items()}
    state = next(iter(models.values())).state_dict()
    for model in models.values():
        model.load_state_dict(state)  # identical weights: only the input size differs
        model.train()
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=0.005, momentum=0.9)
                  for name, m in models.items()}
    images, targets = batch(args.batch, args.size)
    for name, model in models.items():  # warm-up: allocator, oneDNN kernels
        train_step(model, optimizers[name], images, targets)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name].append(train_step(model, optimizers[name], images, targets))
    print(f"{args.arch}, random init, batch {args.batch} of {args.size}x{args.size} images, "
          f"CPU, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds")
    print(f"{'input sizes':<34} s/step (median)   min     max")
    for name, ts in times.items():
        print(f"{name:<34} {statistics.median(ts):>14.2f} {min(ts):>7.2f} {max(ts):>7.2f}")
    slow, fast, fastest = (statistics.median(ts) for ts in times.values())
    print(f"course sizes vs default: {slow / fast:.1f}x faster per step (target >= 6x)")
    print(f"course sizes + 128 RoIs vs default: {slow / fastest:.1f}x faster per step")


if __name__ == "__main__":
    main()

import albumentations as A
import numpy as np
import torch

from autograder.reference_datasets import to_sample
from helpers.transforms import eval_transforms, seed_worker, train_transforms


def test_pipelines_are_strict_and_never_normalise():
    for pipeline in (train_transforms(64), eval_transforms(64)):
        assert pipeline.strict
        assert not any(isinstance(t, A.Normalize) for t in pipeline.transforms)


def test_boxes_follow_a_horizontal_flip():
    flip = A.Compose([A.HorizontalFlip(p=1.0)],
                     bbox_params=train_transforms(64).processors["bboxes"].params, strict=True)
    image = np.zeros((64, 64), np.float32)
    image[10:20, 5:15] = 1.0  # a bright square exactly under the box
    img, target = to_sample(image, np.array([[5, 10, 15, 20]]), 0, flip)
    assert target["boxes"].tolist() == [[49.0, 10.0, 59.0, 20.0]]
    assert img[0, 10:20, 49:59].min() == 1.0 and img[0].sum() == 100


def test_train_pipeline_keeps_box_on_the_lesion():
    pipeline = train_transforms(64, seed=0)
    image = np.zeros((128, 128), np.float32)
    image[40:80, 30:70] = 1.0
    for _ in range(30):
        img, target = to_sample(image, np.array([[30, 40, 70, 80]]), 0, pipeline)
        assert img.shape == (3, 64, 64) and img.dtype == torch.float32
        assert 0.0 <= img.min() and img.max() <= 1.0
        assert target["labels"].dtype == torch.int64
        for x1, y1, x2, y2 in target["boxes"].round().int().tolist():
            inside = img[0, y1:y2, x1:x2]
            # the box still frames the bright square: most of it is lesion
            assert inside.numel() and (inside > 0.5).float().mean() > 0.6


def test_a_sample_that_loses_all_boxes_is_a_negative():
    crop = A.Compose([A.Crop(0, 0, 32, 32)],
                     bbox_params=eval_transforms(32).processors["bboxes"].params, strict=True)
    img, target = to_sample(np.zeros((64, 64), np.float32), np.array([[40, 40, 60, 60]]), 0, crop)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert target["labels"].dtype == torch.int64



def test_importing_helpers_makes_no_network_call():
    import subprocess
    import sys

    # A fresh interpreter whose sockets refuse everything: importing the pipelines (and so
    # albumentations, which checks PyPI for updates unless told not to) must not try.
    probe = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network call: ' + repr(a))\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import helpers.transforms\n"
        "print('offline ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.stdout.strip() == "offline ok", result.stderr


class _Jittered(torch.utils.data.Dataset):
    """The same image every time, through a seeded brightness/contrast jitter."""

    def __init__(self):
        self.transform = A.Compose([A.RandomBrightnessContrast(p=1.0)], strict=True, seed=0)

    def __len__(self):
        return 4

    def __getitem__(self, idx):
        return self.transform(image=np.full((4, 4), 0.5, np.float32))["image"]


def _first_draw_per_worker(worker_init_fn, seed=0):
    loader = torch.utils.data.DataLoader(_Jittered(), batch_size=2, num_workers=2,
                                         worker_init_fn=worker_init_fn,
                                         generator=torch.Generator().manual_seed(seed))
    batches = [np.asarray(b) for b in loader]  # batch 0 from worker 0, batch 1 from worker 1
    return batches[0][0], batches[1][0]


def test_workers_replay_one_stream_unless_reseeded():
    first, second = _first_draw_per_worker(None)
    np.testing.assert_array_equal(first, second)  # the forked generators agree: the bug
    first, second = _first_draw_per_worker(seed_worker)
    assert not np.array_equal(first, second)
    again = _first_draw_per_worker(seed_worker)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, _first_draw_per_worker(seed_worker, seed=1)[0])


def test_seed_worker_does_nothing_outside_a_worker():
    pipeline = _Jittered().transform
    state = pipeline.random_generator.bit_generator.state
    seed_worker(0)
    assert pipeline.random_generator.bit_generator.state == state

import numpy as np
import pytest
import torch

from helpers import env


@pytest.mark.parametrize(
    ("variables", "gpu", "expected"),
    [
        ({}, False, "smoke"),
        ({}, True, "full"),
        ({"CI": "true"}, True, "smoke"),
        ({"CI": "false"}, True, "full"),
        ({"NBGRADER_EXECUTION": "autograde"}, True, "grade"),
        ({"NBGRADER_EXECUTION": "autograde", "CI": "1"}, False, "grade"),
        ({"COURSE_PROFILE": "full", "NBGRADER_EXECUTION": "autograde", "CI": "1"}, False, "full"),
        ({"COURSE_PROFILE": "Smoke"}, True, "smoke"),
    ],
)
def test_profile_precedence(monkeypatch, variables, gpu, expected):
    monkeypatch.delenv("CI", raising=False)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert env.profile() == expected
    assert env.config().profile == expected


def test_unknown_profile_is_named(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="COURSE_PROFILE='fast'.*smoke, grade, full"):
        env.profile()


def test_profiles_shrink_from_full_to_grade():
    full, smoke, grade = (env._CONFIGS[p] for p in ("full", "smoke", "grade"))
    for field in ("pneumonia_patients", "cspine_slices", "image_size"):
        assert getattr(full, field) > getattr(smoke, field) > getattr(grade, field), field
    with pytest.raises(AttributeError):
        smoke.image_size = 1  # frozen: a notebook cannot quietly change a profile


def test_model_sizes_per_profile():
    full, smoke, grade = (env._CONFIGS[p] for p in ("full", "smoke", "grade"))
    assert (full.pneumonia_arch, full.cspine_arch) == ("fasterrcnn_resnet50_fpn_v2",
                                                       "fasterrcnn_resnet50_fpn")
    for cfg in (smoke, grade):  # CPU profiles: the small detector, trained from scratch
        assert cfg.pneumonia_arch == cfg.cspine_arch == env.SMALL_ARCH
    for field in ("pneumonia_epochs", "cspine_epochs"):
        assert getattr(smoke, field) >= getattr(grade, field) >= 1, field
    assert grade.max_train_images is not None and grade.max_train_images <= 2 * grade.batch_size
    for cfg in (full, smoke, grade):
        assert 0 < cfg.lr < 0.1 and 0 < cfg.adamw_lr <= 1e-3
        assert 0 <= cfg.momentum < 1 and cfg.weight_decay >= 0
        assert cfg.warmup_iters >= 0 and (cfg.patience is None or cfg.patience >= 1)


def test_seed_everything_repeats_draws():
    env.seed_everything(7)
    first = (np.random.rand(3), torch.rand(3))
    env.seed_everything(7)
    second = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_device_is_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.device() == torch.device("cpu")


def test_in_colab(monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert not env.in_colab()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260801")
    assert env.in_colab()


def test_print_config_names_versions_profile_and_data(monkeypatch, capsys, cspine_h5):
    from helpers.data import locate

    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    locate("cspine", cspine_h5)
    env.print_config()
    out = capsys.readouterr().out
    assert f"torch          {torch.__version__}" in out
    assert "profile        profile=smoke" in out
    assert "device         cpu" in out
    assert f"cspine: data at {cspine_h5} (from argument)" in out

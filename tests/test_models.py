import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

from helpers import env, models
from helpers.models import (
    ARCHS,
    SMALL,
    WeightsUnavailableError,
    build_detector,
    replace_head,
    weights_cache_path,
)

TORCHVISION_ARCHS = [a for a in ARCHS if a != SMALL]


@pytest.fixture
def no_download(monkeypatch):
    """Fail the test if anything asks torch.hub to download a file; record the attempts."""
    calls = []

    def refuse(url, *args, **kwargs):
        calls.append(url)
        raise URLError(f"download attempted: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


def _files_under(folder: str) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.is_file()]


@pytest.mark.parametrize("prof", ["smoke", "grade"])
@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_offline_with_the_sizes_asked(monkeypatch, no_download, capsys,
                                                        arch, prof):
    monkeypatch.setenv("COURSE_PROFILE", prof)
    model = build_detector(arch, num_classes=2, min_size=64, max_size=96)
    assert isinstance(model, FasterRCNN)
    assert isinstance(model.roi_heads.box_predictor, FastRCNNPredictor)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    assert model.transform.min_size == (64,) and model.transform.max_size == 96
    assert no_download == [], f"{arch} tried to download in profile {prof}"
    assert _files_under(os.environ["TORCH_HOME"]) == []  # nothing fetched, nothing cached
    if arch != SMALL:
        assert "random init" in capsys.readouterr().out


@pytest.mark.parametrize(("prof", "size"), [("smoke", 256), ("grade", 128)])
def test_sizes_default_to_the_profile_image_size(monkeypatch, prof, size):
    monkeypatch.setenv("COURSE_PROFILE", prof)
    model = build_detector(SMALL)
    # torchvision's default (800) would upsample a 256 px slice about 10x in area
    assert model.transform.min_size == (size,) and model.transform.max_size == size


def test_small_preset_has_no_batchnorm_and_small_anchors():
    model = build_detector(SMALL, min_size=64, max_size=64)
    norms = [type(m).__name__ for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert norms == [], f"BatchNorm-like layers would drift on tiny batches: {norms}"
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    smallest = min(min(s) for s in model.rpn.anchor_generator.sizes)
    assert smallest <= 16, "C-spine fracture boxes are ~10-40 px; anchors must reach that low"
    assert isinstance(model.backbone.body.layer4, nn.Module)  # the Grad-CAM layer, as ResNet


@pytest.mark.parametrize("prof", ["smoke", "grade", "full"])
def test_every_profile_names_archs_build_detector_knows(prof):
    cfg = env.config(prof)
    assert {cfg.pneumonia_arch, cfg.cspine_arch} <= set(ARCHS)


def test_replace_head_changes_outputs_and_keeps_inputs():
    model = build_detector(SMALL, num_classes=5, min_size=64, max_size=64)
    before = model.roi_heads.box_predictor.cls_score.in_features
    out = replace_head(model, 3)
    predictor = out.roi_heads.box_predictor
    assert out is model and isinstance(predictor, FastRCNNPredictor)
    assert predictor.cls_score.in_features == before
    assert predictor.cls_score.out_features == 3
    assert predictor.bbox_pred.out_features == 4 * 3
    with pytest.raises(ValueError, match="num_classes=1"):
        replace_head(model, 1)


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown arch 'yolo'.*fasterrcnn_resnet50_fpn_v2"):
        build_detector("yolo")
    with pytest.raises(ValueError, match="pretrained='yes'"):
        build_detector(SMALL, pretrained="yes")


@pytest.mark.parametrize("arch", TORCHVISION_ARCHS)
def test_cache_path_is_torch_hub_checkpoints_with_the_weights_file_name(arch):
    path = weights_cache_path(arch)
    assert path.parent == Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    assert path.name == os.path.basename(models._TORCHVISION[arch][1].url)
    assert path.suffix == ".pth" and "fasterrcnn" in path.name


def test_explicit_pretrained_without_cache_raises_in_smoke(monkeypatch, no_download):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    with pytest.raises(WeightsUnavailableError, match="never downloads"):
        build_detector("fasterrcnn_mobilenet_v3_large_320_fpn", pretrained=True)
    assert no_download == []


def test_full_profile_tries_the_download_then_falls_back_loudly(monkeypatch, no_download,
                                                               capsys):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    model = build_detector(arch, min_size=64, max_size=64)
    assert no_download == [models._TORCHVISION[arch][1].url]  # only full may try
    out = capsys.readouterr().out
    assert "RANDOM weights" in out and "POOR" in out
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    with pytest.raises(WeightsUnavailableError, match="download attempted"):
        build_detector(arch, pretrained=True)


def test_cached_coco_weights_are_loaded_then_the_head_replaced(monkeypatch, no_download):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")  # a cached file needs no network
    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(1)
    coco = build_detector(arch, num_classes=91, pretrained=False)
    path = weights_cache_path(arch)
    path.parent.mkdir(parents=True)
    torch.save(coco.state_dict(), path)
    model = build_detector(arch, num_classes=2, pretrained="auto")
    assert no_download == []
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, coco.backbone.state_dict()[name]), name
    assert torch.equal(model.rpn.head.cls_logits.weight, coco.rpn.head.cls_logits.weight)
    assert model.roi_heads.box_predictor.cls_score.out_features == 2
    assert model.roi_heads.box_predictor.cls_score.in_features == \
        coco.roi_heads.box_predictor.cls_score.in_features
    assert model.roi_heads.box_predictor.cls_score.weight.shape != \
        coco.roi_heads.box_predictor.cls_score.weight.shape
    assert build_detector(arch, num_classes=91).roi_heads.box_predictor.cls_score.out_features \
        == 91


def test_pretrained_false_never_looks_at_the_cache(monkeypatch, no_download):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    model = build_detector("fasterrcnn_resnet50_fpn", pretrained=False, min_size=64,
                           max_size=64)
    assert no_download == []
    assert isinstance(model.backbone.body.bn1, nn.BatchNorm2d)  # live BN: random init

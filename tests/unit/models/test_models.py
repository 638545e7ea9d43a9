from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from simclr_ad.errors import UserError
from simclr_ad.models import backbone
from simclr_ad.models.backbone import create_backbone
from simclr_ad.models.head import ProjectionHead
from simclr_ad.models.simclr import ModelSpec, build_model


def test_head_shapes_and_layers() -> None:
    head = ProjectionHead(in_dim=512)
    widths = [m.out_features for m in head if isinstance(m, torch.nn.Linear)]
    dropouts = [m.p for m in head if isinstance(m, torch.nn.Dropout)]
    assert widths == [512, 256, 128] and dropouts == [0.1, 0.05]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head) == 2
    assert head(torch.randn(4, 512)).shape == (4, 128)


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_model_gives_h_and_z(backbone: str) -> None:
    model = build_model(ModelSpec(backbone=backbone)).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.h.shape == (2, model.encoder.num_features)
    assert out.z.shape == (2, 128)
    assert model.head.in_dim == model.encoder.num_features  # input width taken from the backbone


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_model_gives_stage_maps_in_the_same_pass(backbone: str) -> None:
    model = build_model(ModelSpec(backbone=backbone)).eval()
    x = torch.randn(2, 3, 64, 64)
    plain, with_maps = model(x), model(x, (1, 2))
    assert plain.maps == ()
    torch.testing.assert_close(with_maps.h, plain.h)
    torch.testing.assert_close(with_maps.z, plain.z)
    info = list(model.encoder.feature_info)
    assert [m.shape for m in with_maps.maps] == [
        (2, info[i]["num_chs"], 64 // info[i]["reduction"], 64 // info[i]["reduction"])
        for i in (1, 2)
    ]


def test_unknown_backbone_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="unknown backbone 'resnet1800'"):
        create_backbone("resnet1800")


def test_imagenet_offline_names_alternatives(monkeypatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        if kwargs.get("pretrained"):
            raise OSError("Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(UserError, match=r"--weights PATH\.safetensors .*--weights none"):
        create_backbone("resnet18", "imagenet")


def test_imagenet_without_hub_or_cache_says_how_to_pass_a_file(monkeypatch, tmp_path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(backbone, "_hub_reachable", lambda: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    offline_before = constants.HF_HUB_OFFLINE
    with pytest.raises(UserError) as info:
        create_backbone("resnet18", "imagenet")
    assert str(info.value) == (
        "cannot get ImageNet weights for resnet18 (the model hub is unreachable and they are not "
        "in the local cache); give a local file with timm's key names instead, "
        "--weights PATH.safetensors (or a torch state dict), or --weights none for random init"
    )
    assert offline_before == constants.HF_HUB_OFFLINE  # the offline switch does not leak


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_local_weights_file_loads(tmp_path: Path, fmt: str) -> None:
    source = timm.create_model(
        "resnet18", pretrained=False
    )  # with its classifier, as a hub file has
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_backbone("resnet18", str(path))
    assert torch.equal(loaded.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


def test_weights_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        create_backbone("resnet18", str(tmp_path / "nope.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="cannot read weights file"):
        create_backbone("resnet18", str(junk))
    other = tmp_path / "other.safetensors"
    save_file(timm.create_model("resnet34").state_dict(), str(other))
    with pytest.raises(UserError, match="does not fit"):
        create_backbone("efficientnet_lite0", str(other))


@pytest.mark.parametrize(
    ("name", "last_frozen"), [("resnet18", "layer2"), ("efficientnet_lite0", "blocks.2")]
)
def test_freeze_stages_before_stride_16(name: str, last_frozen: str) -> None:
    from simclr_ad.models.backbone import first_stage_at_stride, freeze_stages

    encoder = create_backbone(name, "none")
    norms = freeze_stages(encoder, first_stage_at_stride(encoder, 16))
    frozen = {n for n, p in encoder.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert any(n.startswith(last_frozen + ".") for n in frozen)
    assert not any(n.startswith(last_frozen + ".") for n in trainable)
    first = next(n for n, _ in encoder.named_parameters())
    assert first in frozen  # the stem
    assert trainable and norms and all(not p.requires_grad for m in norms for p in m.parameters())
    assert freeze_stages(create_backbone(name, "none"), 0) == []

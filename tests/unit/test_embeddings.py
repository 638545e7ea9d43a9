import pytest
import torch

from simclr_ad.embeddings import Embedder, iter_embeddings
from simclr_ad.errors import UserError
from simclr_ad.models.backbone import default_patch_stages
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.preprocessing import Normalization, normalize


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_embedder_gives_h_z_and_stride_8_patches(backbone: str) -> None:
    model = build_model(ModelSpec(backbone)).eval()
    embedder = Embedder(model)
    assert embedder.stages == (2, 3) == default_patch_stages(model.encoder)  # stride 8 and 16
    pixels = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    (out,) = list(iter_embeddings(embedder, pixels, device=torch.device("cpu"), batch_size=8))
    with torch.no_grad():
        h = model.encoder(normalize(pixels))
        z = model.head(h)
    assert torch.allclose(out.h, h, atol=1e-5) and torch.allclose(out.z, z, atol=1e-5)
    assert out.patches is not None and out.patches.shape == (3, embedder.patch_dim, 8, 8)


def test_batching_does_not_change_features() -> None:
    embedder = Embedder(build_model(ModelSpec("resnet18")).eval())
    pixels = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    cpu = torch.device("cpu")
    (whole,) = list(iter_embeddings(embedder, pixels, device=cpu, batch_size=5))
    parts = list(iter_embeddings(embedder, pixels, device=cpu, batch_size=2))
    assert torch.allclose(whole.h, torch.cat([p.h for p in parts]), atol=1e-5)


def test_bad_patch_stages() -> None:
    with pytest.raises(UserError, match="out of range"):
        Embedder(build_model(ModelSpec("resnet18")), stages=(2, 9))


def test_features_take_the_models_normalisation() -> None:
    """A model whose spec names 0.5/0.5 is fed images normalised with 0.5/0.5, not ImageNet's."""
    spec = ModelSpec("resnet18", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch.manual_seed(0)
    model = build_model(spec).eval()
    assert model.normalization == Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    (out,) = list(iter_embeddings(Embedder(model), pixels, device=torch.device("cpu")))
    with torch.no_grad():
        h = model.encoder(pixels.float() / 127.5 - 1.0)
        h_imagenet = model.encoder(normalize(pixels))
    torch.testing.assert_close(out.h, h, rtol=0, atol=1e-5)
    assert (out.h - h_imagenet).abs().max() > 1e-3

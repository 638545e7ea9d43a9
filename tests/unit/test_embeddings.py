import pytest
import torch

from simclr_ad.data.augment import normalize
from simclr_ad.embeddings import Embedder, Photometric, default_patch_stages, iter_embeddings
from simclr_ad.errors import UserError
from simclr_ad.models.simclr import ModelSpec, build_model


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


def test_gain_correction_undoes_a_darker_lamp() -> None:
    g = torch.Generator().manual_seed(0)
    bright = torch.randint(60, 200, (2, 3, 16, 16), generator=g, dtype=torch.uint8)
    dark = (bright.float() * 0.8).round().to(torch.uint8)
    photometric = Photometric.fit("gain", bright)
    assert photometric.level == pytest.approx(bright.float().mean().item() / 255, rel=1e-5)
    a, b = photometric.apply(normalize(bright)), photometric.apply(normalize(dark))
    assert (a - b).abs().max() < 0.05  # rounding of the darker copy only
    assert (normalize(bright) - normalize(dark)).abs().max() > 0.3


def test_standardize_matches_contrast_and_none_is_identity() -> None:
    g = torch.Generator().manual_seed(1)
    image = torch.randint(60, 200, (1, 3, 16, 16), generator=g, dtype=torch.uint8)
    flat = ((image.float() - 128) * 0.5 + 128).round().to(torch.uint8)  # lower contrast
    photometric = Photometric.fit("standardize", image)
    difference = photometric.apply(normalize(image)) - photometric.apply(normalize(flat))
    assert difference.abs().max() < 0.1
    x = normalize(image)
    assert torch.equal(Photometric().apply(x), x)
    with pytest.raises(UserError, match="photometric"):
        Photometric.fit("auto", image)

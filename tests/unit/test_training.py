"""The training loop's precision: bf16 autocast on CPUs that have it, float32 elsewhere."""

import pytest
import torch

from simclr_ad import training
from simclr_ad.data.augment import create_augment
from simclr_ad.distributed import DistInfo
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.training import LoopSettings, Trainer, generator_for

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("native", "enabled", "expected"),
    [
        (True, True, torch.bfloat16),
        (True, False, None),
        (False, True, None),  # emulated bf16 would be slower than float32
    ],
)
def test_cpu_autocast_only_with_native_bf16(
    monkeypatch: pytest.MonkeyPatch, native: bool, enabled: bool, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    assert training.amp_dtype(CPU, enabled) is expected


@pytest.mark.parametrize("amp", [True, False])
def test_train_step_precision(monkeypatch: pytest.MonkeyPatch, amp: bool) -> None:
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", head_hidden=(16,), head_out=8, head_dropout=(0.0,)))
    settings = LoopSettings(
        epochs=1,
        batch_size=4,
        lr=1e-3,
        weight_decay=0.0,
        temperature=0.5,
        seed=0,
        checkpoint_every=1,
        amp=amp,
    )
    trainer = Trainer(model, create_augment("seed", 32), settings, CPU, DistInfo())
    seen: list[torch.dtype] = []
    model.encoder.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    loss = trainer.train_step(images, generator_for(0, 1, 1), total=4)
    assert torch.isfinite(loss)
    assert seen == [torch.bfloat16 if amp else torch.float32]
    # the weights stay float32 and are updated either way
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

"""The SimCLR training loop: views, NT-Xent, AdamW + OneCycle, AMP, checkpoints, exact resume, DDP.

It knows nothing about anomaly scoring. Randomness is derived per epoch from ``(seed, epoch)``,
so an epoch's data order, augmentations and dropout masks are the same whether the run went
straight through or was resumed from a checkpoint; the checkpoint also carries every RNG state.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from simclr_ad.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from simclr_ad.distributed import DistInfo
from simclr_ad.errors import UserError
from simclr_ad.models.backbone import channels_last
from simclr_ad.objectives import Objective, SimCLRObjective
from simclr_ad.progress import progress_bar

if TYPE_CHECKING:
    from simclr_ad.config import TrainConfig

log = logging.getLogger(__name__)

Augment = Callable[..., Tensor]  # (uint8 B×3×H×W, generator, *, total, offset) -> float B×3×S×S
LOG_FIELDS = ("epoch", "loss", "lr", "seconds", "images_per_s")


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """What the loop needs to know: the keys of the config's loop section it reads, and the
    seed (``from_config``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    temperature: float
    seed: int
    checkpoint_every: int
    amp: bool = True
    compile: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> LoopSettings:
        """The loop's keys of ``config``, by name (its loop section, and the run's seed)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class ResumeState:
    """What a checkpoint gives back to the loop."""

    epoch: int  # epochs completed
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None  # None: start a new OneCycle (training is being extended)
    scaler: dict[str, Any] | None
    rng: dict[str, Any] | None
    history: list[dict[str, float]]
    schedule_start: int  # the epoch at which the current OneCycle schedule began
    objective: dict[str, Tensor] | None = None  # the objective's state (msc centre, classifier)


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator_for(*parts: int) -> torch.Generator:
    """A CPU generator seeded from ``parts`` (e.g. seed, epoch, stream)."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def global_batch_size(requested: int, n_images: int, world_size: int) -> int:
    """Batch capped at the dataset size and rounded down to a multiple of the number of ranks."""
    batch = min(requested, n_images)
    batch -= batch % world_size
    if batch < 2 * world_size:
        raise UserError(
            f"need at least {2 * world_size} training images for {world_size} process(es), "
            f"got {n_images}"
        )
    return batch


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX).

    Elsewhere autocast would emulate bf16 and run slower than float32, so it stays off.
    """
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # no public API yet
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """The autocast dtype of the forward pass, or None for float32.

    CUDA: bf16 where supported, else fp16 (with a gradient scaler). CPU: bf16 where the
    hardware has it, where it trains faster than float32 (BENCHMARKS.md, "Speed").
    """
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _make_scheduler(
    optimizer: torch.optim.Optimizer, lr: float, steps: int
) -> torch.optim.lr_scheduler.OneCycleLR:
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))


class Trainer:
    """Runs self-supervised epochs over an in-memory uint8 image tensor.

    Args:
        model: returns an object with ``.h`` (B×C) and ``.z`` (B×D) for a B×3×S×S batch;
            wrapped in DDP if needed. Parameters that do not require gradients are not optimised.
        augment: produces one normalised view per call.
        settings: loop hyper-parameters.
        device: the training device (resolved by the caller).
        dist: this process's rank information.
        objective: inputs and loss (default: SimCLR with ``settings.temperature``); its own
            parameters are optimised with the model's.
        frozen_norms: BatchNorm layers kept in eval mode (those of frozen stages).
    """

    def __init__(
        self,
        model: nn.Module,
        augment: Augment,
        settings: LoopSettings,
        device: torch.device,
        dist: DistInfo,
        objective: Objective | None = None,
        frozen_norms: Sequence[nn.Module] = (),
    ) -> None:
        self.settings = settings
        self.device = device
        self.dist = dist
        self.augment = augment
        self.layout = channels_last(device)
        self.model = model.to(device).to(memory_format=self.layout)
        self.net: nn.Module = self.model
        if dist.enabled:
            ids = None
            if device.type == "cuda":  # batch statistics over the global batch (gloo has no SyncBN)
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                ids = [device.index]
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if settings.compile:
            self.net = torch.compile(self.net)  # type: ignore[assignment]
        self.objective = (objective or SimCLRObjective(settings.temperature)).to(device)
        self.frozen_norms = tuple(frozen_norms)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [*trainable, *self.objective.parameters()],
            lr=settings.lr,
            weight_decay=settings.weight_decay,
        )
        self.amp_dtype = amp_dtype(device, settings.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def train_step(self, images: Tensor, generator: torch.Generator, total: int) -> Tensor:
        """One optimisation step on this rank's share of a global batch; returns the loss.

        Args:
            images: uint8 b×3×H×W, this rank's rows of the global batch of ``total`` images.
            generator: draws the augmentation parameters of the whole global batch.
            total: global batch size.
        """
        offset = self.dist.rank * images.shape[0]
        images = images.to(self.device, non_blocking=True)
        views = self.objective.inputs(images, self.augment, generator, total, offset)
        views = views.contiguous(memory_format=self.layout)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            out = self.net(views, self.objective.stages)
        loss = self.objective.loss(out.h, out.z, out.maps)
        self.scaler.scale(loss).backward()
        if self.dist.enabled:  # DDP averages the model's gradients, not the objective's
            _average_gradients(list(self.objective.parameters()), self.dist.world_size)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    def fit(
        self,
        pixels: Tensor,
        checkpoint_dir: Path | None,
        resume: ResumeState | None = None,
        on_checkpoint: Callable[[int], dict[str, Any]] | None = None,
    ) -> list[dict[str, float]]:
        """Train until ``settings.epochs``; returns the per-epoch log (resumed history included).

        Args:
            pixels: uint8 N×3×H×W training images (CPU, possibly memory-mapped).
            checkpoint_dir: where rank 0 writes ``epoch_NNN.ckpt`` and ``last.ckpt`` (None: none).
            resume: state from a checkpoint, or None to start fresh.
            on_checkpoint: extra entries for each checkpoint (the run's config and data identity).
        """
        s = self.settings
        world = self.dist.world_size
        batch = global_batch_size(s.batch_size, pixels.shape[0], world)
        local = batch // world
        steps = pixels.shape[0] // batch
        start, history, schedule_start = 0, [], 0
        scheduler = (
            self._restore(resume, steps)
            if resume
            else _make_scheduler(self.optimizer, s.lr, s.epochs * steps)
        )
        if resume is not None:
            start, history, schedule_start = (
                resume.epoch,
                list(resume.history),
                resume.schedule_start,
            )
        self.net.train()
        for norm in self.frozen_norms:  # frozen stages keep their pretrained statistics
            norm.eval()
        for epoch in range(start + 1, s.epochs + 1):
            row = self._epoch(pixels, epoch, batch, local, steps, scheduler)
            self._stop_if_diverged(row["loss"], epoch, checkpoint_dir)
            history.append(row)
            if self.dist.is_main:
                log.info(
                    "epoch %d/%d loss %.4f (%.1f images/s)",
                    epoch,
                    s.epochs,
                    row["loss"],
                    row["images_per_s"],
                )
            if (
                checkpoint_dir is not None
                and self.dist.is_main
                and (epoch % s.checkpoint_every == 0 or epoch == s.epochs)
            ):
                extra = on_checkpoint(epoch) if on_checkpoint else {}
                payload = self._payload(epoch, scheduler, history, schedule_start) | extra
                if epoch % s.checkpoint_every == 0:
                    save_checkpoint(checkpoint_dir / f"epoch_{epoch:03d}.ckpt", payload)
                save_checkpoint(checkpoint_dir / "last.ckpt", payload)
        return history

    def _stop_if_diverged(self, loss: float, epoch: int, checkpoint_dir: Path | None) -> None:
        """Stop, with one line naming the epoch, when any rank's epoch loss is not finite; the
        checkpoints written so far (all from finite epochs) are kept as they are."""
        finite = torch.tensor(float(math.isfinite(loss)), device=self.device)
        if self.dist.enabled:
            torch_dist.all_reduce(finite, op=torch_dist.ReduceOp.MIN)
        if finite.item() == 1.0:
            return
        last = checkpoint_dir / "last.ckpt" if checkpoint_dir is not None else None
        kept = (
            f"; the last good checkpoint, {last}, is kept"
            if last is not None and last.is_file()
            else "; no checkpoint was written before it"
        )
        raise UserError(
            f"training diverged: the loss became non-finite in epoch {epoch}{kept} "
            "(try a lower --lr)"
        )

    def _restore(self, resume: ResumeState, steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
        """Load model, optimizer, scaler and RNG states; continue or start the OneCycle schedule."""
        self.model.load_state_dict(resume.model)
        if resume.objective is not None:
            self.objective.load_state_dict(resume.objective)
        if resume.scaler:
            self.scaler.load_state_dict(resume.scaler)
        if resume.rng:
            restore_rng_state(resume.rng)
        remaining = (self.settings.epochs - resume.schedule_start) * steps
        if (
            resume.scheduler is None
        ):  # extending: a new cycle over the added epochs (write-up stage 2)
            self.optimizer.load_state_dict(resume.optimizer)
            return _make_scheduler(self.optimizer, self.settings.lr, remaining)
        scheduler = _make_scheduler(self.optimizer, self.settings.lr, remaining)
        self.optimizer.load_state_dict(resume.optimizer)  # after the scheduler: keeps the saved lr
        scheduler.load_state_dict(resume.scheduler)
        return scheduler

    def _epoch(
        self,
        pixels: Tensor,
        epoch: int,
        batch: int,
        local: int,
        steps: int,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> dict[str, float]:
        s = self.settings
        order = torch.randperm(pixels.shape[0], generator=generator_for(s.seed, epoch, 0))
        augment_generator = generator_for(s.seed, epoch, 1)
        torch.manual_seed(derive_seed(s.seed, epoch, 2, self.dist.rank))  # dropout masks
        if self.device.type == "cuda":
            torch.cuda.manual_seed(derive_seed(s.seed, epoch, 3, self.dist.rank))
        started = time.perf_counter()
        total_loss = torch.zeros((), device=self.device)
        used_lr = float(scheduler.get_last_lr()[0])
        bar = progress_bar(
            range(steps), desc=f"epoch {epoch}/{s.epochs}", unit="step", enabled=self.dist.is_main
        )
        for step in bar:
            rows = order[step * batch : (step + 1) * batch][
                self.dist.rank * local : (self.dist.rank + 1) * local
            ]
            loss = self.train_step(pixels[rows], augment_generator, total=batch)
            used_lr = float(scheduler.get_last_lr()[0])  # the rate this step was taken with
            scheduler.step()
            total_loss += loss
            if step % 5 == 0 or step == steps - 1:
                elapsed = max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(
                    loss=f"{loss.item():.3f}", img_s=f"{(step + 1) * batch / elapsed:.0f}"
                )
        seconds = time.perf_counter() - started
        return {
            "epoch": epoch,
            "loss": float(total_loss.item() / steps),
            "lr": used_lr,  # the epoch's last step's, not the next one's
            "seconds": seconds,
            "images_per_s": steps * batch / max(seconds, 1e-9),
        }

    def _payload(
        self,
        epoch: int,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        history: list[dict[str, float]],
        schedule_start: int,
    ) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "total_epochs": self.settings.epochs,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "sampler": {"seed": self.settings.seed, "next_epoch": epoch + 1},
            "history": history,
            "schedule_start": schedule_start,
        }


def _average_gradients(params: list[nn.Parameter], world_size: int) -> None:
    """All-reduce and average the gradients of parameters outside DDP (e.g. a classifier)."""
    for p in params:
        if p.grad is not None:
            torch_dist.all_reduce(p.grad)
            p.grad /= world_size


def write_train_log(path: Path, history: list[dict[str, float]]) -> None:
    """``train_log.csv``: epoch, loss, lr (the rate of the epoch's last step), seconds, images/s."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row[k] for k in LOG_FIELDS})

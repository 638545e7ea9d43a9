"""Two CPU processes (gloo) match one process on the same global batch; torchrun end to end."""

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from simclr_ad.data.augment import create_augment
from simclr_ad.distributed import DistInfo, init_distributed, shutdown_distributed
from simclr_ad.models.simclr import ModelSpec, build_model
from simclr_ad.training import LoopSettings, Trainer, generator_for

GLOBAL_BATCH = 8
SETTINGS = LoopSettings(
    epochs=1,
    batch_size=GLOBAL_BATCH,
    lr=1e-2,
    weight_decay=0.0,
    temperature=0.5,
    seed=0,
    checkpoint_every=1,
    amp=False,  # the comparison is of float32 gradient maths
)


def _images() -> torch.Tensor:
    return torch.randint(
        0,
        256,
        (GLOBAL_BATCH, 3, 40, 40),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.uint8,
    )


def _trainer(dist: DistInfo) -> Trainer:
    torch.manual_seed(0)
    # No dropout, and BatchNorm on running statistics: with gloo, batch statistics stay per rank
    # (SyncBatchNorm is used on CUDA), so they are held fixed to compare the gradient maths exactly.
    model = build_model(
        ModelSpec(backbone="resnet18", head_hidden=(32,), head_out=16, head_dropout=(0.0,))
    )
    trainer = Trainer(model, create_augment("seed", 8), SETTINGS, torch.device("cpu"), dist)
    # Plain SGD: the updated weights show the gradient itself. Adam's first step is lr * sign(g),
    # which turns float noise in near-zero gradients into full-size differences.
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=SETTINGS.lr)
    trainer.net.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return trainer


def _step(trainer: Trainer, images: torch.Tensor) -> torch.Tensor:
    return trainer.train_step(images, generator_for(0, 1, 1), total=GLOBAL_BATCH)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    trainer = _trainer(info)
    share = GLOBAL_BATCH // world
    loss = _step(trainer, _images()[rank * share : (rank + 1) * share])
    torch.distributed.all_reduce(loss)  # each rank's loss averages its own anchors
    if rank == 0:
        torch.save({"loss": loss / world, "state": trainer.model.state_dict()}, out)
    shutdown_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    distributed = torch.load(out, weights_only=True)

    single = _trainer(DistInfo())
    before = {k: v.clone() for k, v in single.model.state_dict().items()}
    loss = _step(single, _images())
    assert torch.allclose(distributed["loss"], loss, rtol=1e-5, atol=1e-6)
    after = single.model.state_dict()
    changed = 0
    for key, value in after.items():
        assert torch.allclose(
            distributed["state"][key].float(), value.float(), rtol=1e-4, atol=1e-6
        ), key
        changed += int(not torch.equal(value, before[key]))
    assert changed > 10  # the step really updated the weights


def _readme_torchrun() -> list[str]:
    """The README's torchrun command, as a user would copy it."""
    readme = Path(__file__).resolve().parents[2] / "README.md"
    line = next(ln for ln in readme.read_text().splitlines() if ln.startswith("torchrun "))
    return shlex.split(line)


def test_readme_torchrun_command_in_the_activated_venv(tiny_data: Path, tmp_path: Path) -> None:
    """The README's command, in a shell where only ``source .venv/bin/activate`` set the PATH;
    its data, category, output and process count swapped for the tiny dataset's."""
    venv = Path(sys.prefix)
    if venv == Path(sys.base_prefix) or not (venv / "bin" / "activate").is_file():
        pytest.skip("the tests are not running in a virtual environment with bin/activate")
    run = tmp_path / "run"
    cmd = _readme_torchrun()
    swaps = {"--nproc_per_node": "2", "--data": str(tiny_data), "--categories": "fabric"}
    for flag, value in {**swaps, "--out": str(run)}.items():
        cmd[cmd.index(flag) + 1] = value  # the README still has each of these flags
    assert cmd[:2] == ["torchrun", "--standalone"] and "-m" in cmd and "train" in cmd
    cmd += ["--epochs", "2", "--image-size", "32", "--batch-size", "8", "--weights", "none"]
    cmd += ["--device", "cpu"]
    script = f"source {shlex.quote(str(venv / 'bin' / 'activate'))} && command -v torchrun && "
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= {"PATH": "/usr/local/bin:/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-c", script + shlex.join(cmd)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0] == str(venv / "bin" / "torchrun")
    assert (run / "model" / "model.safetensors").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert len((run / "train_log.csv").read_text().strip().splitlines()) == 3

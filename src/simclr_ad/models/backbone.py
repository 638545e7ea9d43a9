"""Backbone factory: any timm model by name, with ImageNet, random or local-file weights; and its
stages: freezing, the patch stages (stride 8 and 16 by default) and joining their maps."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simclr_ad.errors import UserError

log = logging.getLogger(__name__)

WEIGHT_CHOICES = ("imagenet", "none")


def create_backbone(name: str, weights: str = "none") -> nn.Module:
    """A timm model without its classifier: ``model(x)`` gives pooled features B×C.

    Args:
        name: a timm model name, e.g. ``resnet18`` or ``efficientnet_lite0``.
        weights: ``imagenet`` (timm's standard pretrained weights, downloaded once and cached),
            ``none`` (random init) or a path to a ``.safetensors`` / torch state-dict file with
            timm key names.
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise UserError(f"unknown backbone {name!r}: not a timm model name{hint}")
    if weights == "imagenet":
        return _pretrained(name)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    if weights != "none":
        load_weights_file(model, Path(weights))
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection (behind a proxy: assumed yes)."""
    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _pretrained(name: str) -> nn.Module:
    """timm's pretrained model; offline, only the local cache is tried (no slow retries)."""
    from huggingface_hub import constants

    offline, saved = not _hub_reachable(), constants.HF_HUB_OFFLINE
    hub_log = logging.getLogger("huggingface_hub")
    hub_level = hub_log.level
    try:
        if offline:
            constants.HF_HUB_OFFLINE = True
            hub_log.setLevel(logging.ERROR)
        return timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:  # hub, network and cache errors come in many types
        reason = (
            "the model hub is unreachable and they are not in the local cache"
            if offline
            else (str(exc).splitlines()[0][:160] or type(exc).__name__)
        )
        raise UserError(
            f"cannot get ImageNet weights for {name} ({reason}); give a local file with timm's "
            "key names instead, --weights PATH.safetensors (or a torch state dict), "
            "or --weights none for random init"
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = saved
        hub_log.setLevel(hub_level)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a torch file (loaded with ``weights_only=True``)."""
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist (use --weights imagenet|none|PATH)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/torch raise several types for corrupt files
        raise UserError(
            f"cannot read weights file {path}: {str(exc).splitlines()[0][:160]}"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load timm-named weights into ``model``; the classifier's keys are ignored."""
    state = read_state_dict(path)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        detail = next(
            (ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc)
        )
        raise UserError(f"weights file {path} does not fit this backbone: {detail[:200]}") from None
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:5])
        raise UserError(
            f"weights file {path} does not fit this backbone: {len(result.missing_keys)} "
            f"missing keys (e.g. {shown})"
        )
    if result.unexpected_keys:
        log.info("ignored %d keys from %s (classifier)", len(result.unexpected_keys), path)


def channels_last(device: torch.device) -> torch.memory_format:
    """The convolution-friendly memory format for ``device``.

    Channels-last (NHWC) on CUDA and on the CPU, where oneDNN's convolutions are faster in it
    (BENCHMARKS.md, "Speed"). Other devices keep the default layout.
    """
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format


def first_stage_at_stride(encoder: nn.Module, stride: int) -> int:
    """Index (into timm's ``feature_info``) of the first stage with this output stride."""
    info = list(encoder.feature_info)  # type: ignore[arg-type]
    match = next((i for i, f in enumerate(info) if f["reduction"] == stride), None)
    if match is None:
        raise UserError(f"the backbone has no stage at stride {stride}; set frozen_stages")
    return match


def freeze_stages(encoder: nn.Module, n: int) -> list[nn.Module]:
    """Freeze the stem and the first ``n`` ``feature_info`` stages of a timm encoder.

    Their parameters stop requiring gradients. Returns their BatchNorm layers, which the caller
    keeps in eval mode during training so that their running statistics stay the pretrained ones.
    """
    info = list(encoder.feature_info)  # type: ignore[arg-type]
    if not 0 <= n <= len(info):
        raise UserError(f"frozen_stages={n} out of range: the backbone has {len(info)} stages")
    if n == 0:
        return []
    last = info[n - 1]["module"]
    frozen: list[nn.Module] = []
    seen_last = False
    for name, module in encoder.named_modules():  # registration order = forward order in timm
        inside = name == last or name.startswith(last + ".")
        if seen_last and not inside:
            break
        seen_last = seen_last or inside
        if name and not (last.startswith(name + ".")):  # not a container of the last stage
            frozen.append(module)
    for module in frozen:
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)
    return [m for m in frozen if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def join_maps(maps: Sequence[Tensor]) -> Tensor:
    """Stage maps [B×C_i×h_i×w_i] -> B×(ΣC_i)×h_0×w_0: each brought to the first map's grid
    (bilinear) and concatenated along channels."""
    size = maps[0].shape[-2:]
    resized = [
        m
        if m.shape[-2:] == size
        else F.interpolate(m, size=size, mode="bilinear", align_corners=False)
        for m in maps
    ]
    return torch.cat(resized, dim=1)


def stages_at_strides(encoder: nn.Module, strides: Sequence[int]) -> tuple[int, ...] | None:
    """Indices (into timm's ``feature_info``) of the first stage at each stride, or None where
    the backbone has no stage at one of them."""
    info = list(encoder.feature_info)  # type: ignore[arg-type]
    stages = []
    for stride in strides:
        match = next((i for i, f in enumerate(info) if f["reduction"] == stride), None)
        if match is None:
            return None
        stages.append(match)
    return tuple(stages)


def default_patch_stages(encoder: nn.Module) -> tuple[int, ...]:
    """Indices (into timm's ``feature_info``) of the first stages at stride 8 and 16."""
    stages = stages_at_strides(encoder, (8, 16))
    if stages is None:
        info = list(encoder.feature_info)  # type: ignore[arg-type]
        listing = ", ".join(
            f"{i}: {f['module']} (stride {f['reduction']})" for i, f in enumerate(info)
        )
        raise UserError(
            f"cannot choose patch stages automatically; set patch_stages from: {listing}"
        )
    return stages


def resolve_patch_stages(encoder: nn.Module, stages: Sequence[int] | None) -> tuple[int, ...]:
    """``stages`` checked against the backbone's ``feature_info`` (None or empty: stride 8
    and 16, :func:`default_patch_stages`)."""
    chosen = tuple(stages) if stages else default_patch_stages(encoder)
    n_stages = len(list(encoder.feature_info))  # type: ignore[arg-type]
    bad = [s for s in chosen if not 0 <= s < n_stages]
    if bad:
        raise UserError(
            f"patch_stages {bad} out of range: the backbone has stages 0..{n_stages - 1}"
        )
    return chosen


def patch_channels(encoder: nn.Module, stages: Sequence[int]) -> int:
    """The summed channel count of the ``feature_info`` stages ``stages``."""
    info = list(encoder.feature_info)  # type: ignore[arg-type]
    return sum(int(info[s]["num_chs"]) for s in stages)

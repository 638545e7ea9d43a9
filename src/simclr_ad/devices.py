"""The one place a device name (``--device``, ``SIMCLR_AD_DEVICE``) becomes a torch device."""

from __future__ import annotations

import torch

from simclr_ad.config import DEVICE_PATTERN
from simclr_ad.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an unavailable explicit device is a UserError."""
    if not DEVICE_PATTERN.match(name):
        raise UserError(f"unknown device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} requested but CUDA is not available here; use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(
            f"device {name!r} requested but MPS is not available here; use --device cpu"
        )
    return device

"""The saved detector: ``model.safetensors`` (tensors) + ``model.json`` (metadata). No pickle.

``model.json`` records the format version, the SHA-256 of ``model.safetensors`` and the SHA-256
of its own other contents (canonical JSON), so a missing, truncated, tampered (tensors or
metadata, e.g. an edited threshold), older (unhashed), newer or malformed-format bundle is
refused with one clear message.
The hashes detect damage and edits, they do not authenticate the author. A bundle
is written to a temporary folder beside the target and renamed into place, so an interrupted
write leaves the previous bundle intact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from simclr_ad.errors import UserError

BUNDLE_FORMAT = 2  # 2: model.json carries metadata_sha256
SUPPORTED_FORMATS = frozenset({2})  # every one verified: tensors and metadata hashes
TENSORS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


@dataclasses.dataclass(frozen=True)
class Bundle:
    """Tensors (model weights, later scorer state) and JSON-able metadata."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, Any]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _metadata_sha256(metadata: dict[str, Any]) -> str:
    """SHA-256 of the metadata as canonical JSON, without its own hash entry."""
    body = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_bundle(folder: Path, bundle: Bundle) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``folder``, replacing it atomically."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in bundle.tensors.items()}
        save_file(tensors, str(staging / TENSORS_FILE))
        metadata = {"format_version": BUNDLE_FORMAT, **bundle.metadata}
        metadata["tensors_sha256"] = _sha256(staging / TENSORS_FILE)
        metadata["metadata_sha256"] = _metadata_sha256(metadata)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n")
        _replace_folder(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(f"cannot write model bundle {folder}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` onto ``target``; the old folder is kept aside until the rename succeeded."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_bundle(folder: Path) -> Bundle:
    """Read and verify a bundle; raises UserError naming the problem."""
    metadata = verify_bundle(folder)
    tensor_path = folder / TENSORS_FILE
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"model bundle {tensor_path} is corrupt: {exc}") from None
    return Bundle(tensors, metadata)


def verify_bundle(folder: Path) -> dict[str, Any]:
    """The bundle's metadata once its format and both hashes are checked; tensors not loaded.

    Raises:
        UserError: naming the problem (missing files, corrupt or edited metadata, unsupported
            format, tensors that do not match their hash).
    """
    meta_path, tensor_path = folder / METADATA_FILE, folder / TENSORS_FILE
    if not meta_path.is_file() or not tensor_path.is_file():
        raise UserError(
            f"{folder} is not a model bundle: expected {METADATA_FILE} and {TENSORS_FILE}"
        )
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"model bundle {meta_path} is unreadable or corrupt: {exc}") from None
    _check_format(folder, metadata)
    if _metadata_sha256(metadata) != metadata.get("metadata_sha256"):
        raise UserError(
            f"model bundle {folder}: {METADATA_FILE} does not match its recorded hash "
            "(edited or corrupt); retrain or restore the bundle"
        )
    if _sha256(tensor_path) != metadata.get("tensors_sha256"):
        raise UserError(
            f"model bundle {folder}: {TENSORS_FILE} does not match its recorded hash "
            "(truncated or modified)"
        )
    return metadata


def _check_format(folder: Path, metadata: object) -> None:
    """One line unless ``metadata`` is a description of a format this version verifies."""
    if not isinstance(metadata, dict) or "format_version" not in metadata:
        raise UserError(f"model bundle {folder}: {METADATA_FILE} is not a simclr-ad description")
    version = metadata["format_version"]
    if type(version) is not int:  # bool is an int to isinstance: `true` must not pass
        raise UserError(f"model bundle {folder} has an invalid format_version {version!r}")
    if version > BUNDLE_FORMAT:
        raise UserError(
            f"model bundle {folder} has format {version}, newer than this simclr-ad "
            f"reads ({BUNDLE_FORMAT}); upgrade simclr-ad"
        )
    if version not in SUPPORTED_FORMATS:
        raise UserError(
            f"model bundle {folder} has format {version}, which carries no metadata hash and "
            f"cannot be verified; this simclr-ad reads format {BUNDLE_FORMAT}: retrain the model"
        )


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``{prefix + key: tensor}`` for storing several state dicts in one bundle."""
    return {f"{prefix}{k}": v for k, v in state.items()}


def unprefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

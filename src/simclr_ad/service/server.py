"""Starting the service under uvicorn: one process, or ``workers`` processes sharing the port."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
from pathlib import Path

from simclr_ad.bundle import METADATA_FILE, TENSORS_FILE, verify_bundle
from simclr_ad.errors import UserError
from simclr_ad.predictor import TARGET_FPR_NEEDS_SCORES, OperatingPoint, bundle_folder
from simclr_ad.service import app as service_app
from simclr_ad.service.uploads import UploadLimits

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """A UserError naming the address when it cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_model(model: Path) -> None:
    """A UserError unless ``model`` is an ``.onnx`` file or a bundle whose hashes verify (the
    bundle folder or the run folder above it); nothing is loaded."""
    if model.suffix.lower() == ".onnx":
        if not model.is_file():
            raise UserError(f"ONNX model {model} does not exist")
        return
    if not (model / METADATA_FILE).exists() and (model / "model" / METADATA_FILE).exists():
        model = model / "model"
    verify_bundle(model)


def check_stored_scores(model: Path) -> None:
    """A UserError unless ``model`` stores the good scores ``--target-fpr`` re-derives the
    thresholds from (for every group, of the primary scorer); only the tensor names are read."""
    from safetensors import safe_open

    if model.suffix.lower() == ".onnx":
        raise UserError(TARGET_FPR_NEEDS_SCORES)
    folder = bundle_folder(model)
    detector = verify_bundle(folder).get("detector", {})
    primary = detector.get("settings", {}).get("primary")
    with safe_open(str(folder / TENSORS_FILE), framework="pt") as tensors:
        names = set(tensors.keys())
    if any(f"calibration.{group}.{primary}" not in names for group in detector.get("groups", {})):
        raise UserError(TARGET_FPR_NEEDS_SCORES)


def serve(
    model: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    device: str = "auto",
    max_batch: int = 8,
    max_upload_bytes: int | None = None,
    max_pixels: int | None = None,
    api_key: str | None = None,
    operating_point: OperatingPoint | None = None,
) -> None:
    """Serve ``model`` (bundle folder or ``.onnx``) until interrupted, at ``operating_point``
    (default: the calibrated thresholds).

    With one worker the model is loaded here, so a bad bundle fails with one line before
    uvicorn starts. With ``workers > 1`` each worker process loads its own copy and this process
    only verifies the bundle's hashes (:func:`check_model`), so no idle copy stays in memory.
    ``api_key``, when given, is required on every ``/v1/*`` request.
    """
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {max_batch}")
    if api_key is not None and not api_key.strip():
        raise UserError("--api-key must not be empty")
    if not api_key and not is_loopback(host):
        log.warning("serving on %s without an API key: anyone who can reach it may use it", host)
    if max_pixels is not None and max_pixels < 1:
        raise UserError(f"--max-pixels must be >= 1, got {max_pixels}")
    limits = UploadLimits()
    if max_upload_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_upload_bytes)
    if max_pixels is not None:
        limits = dataclasses.replace(limits, max_pixels=max_pixels)
    point = operating_point or OperatingPoint()
    if workers == 1:
        _serve_in_process(model, host, port, device, max_batch, limits, api_key, point)
    else:
        _serve_workers(model, host, port, workers, device, max_batch, limits, api_key, point)


def _serve_in_process(
    model: Path,
    host: str,
    port: int,
    device: str,
    max_batch: int,
    limits: UploadLimits,
    api_key: str | None,
    point: OperatingPoint,
) -> None:
    import uvicorn

    from simclr_ad.devices import resolve_device
    from simclr_ad.predictor import open_predictor

    predictor = open_predictor(model, resolve_device(device), point)
    check_port_free(host, port)
    app = service_app.create_app(predictor, limits=limits, max_batch=max_batch, api_key=api_key)
    uvicorn.run(app, host=host, port=port, log_level="info")


def _serve_workers(
    model: Path,
    host: str,
    port: int,
    workers: int,
    device: str,
    max_batch: int,
    limits: UploadLimits,
    api_key: str | None,
    point: OperatingPoint,
) -> None:
    """``workers`` processes, each loading the model (told by variables); none loaded here."""
    import uvicorn

    check_model(model)
    if point.target_fpr is not None:  # else each worker would refuse it after the port opened
        check_stored_scores(model)
    check_port_free(host, port)
    os.environ |= {
        service_app.MODEL_ENV: str(model.resolve()),
        service_app.DEVICE_ENV: device,
        service_app.BATCH_ENV: str(max_batch),
        service_app.MAX_BYTES_ENV: str(limits.max_bytes),
        service_app.MAX_PIXELS_ENV: str(limits.max_pixels),
        "SIMCLR_AD_WORKERS": str(workers),
    }
    for field, name in service_app.OPERATING_POINT_ENV.items():
        value = getattr(point, field)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = repr(value)
    if api_key:
        os.environ[service_app.API_KEY_ENV] = api_key
    uvicorn.run(
        "simclr_ad.service.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )

"""Starting the service under uvicorn: one process, or ``workers`` processes sharing the port."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import socket
from pathlib import Path

from simclr_ad.bundle import METADATA_FILE, verify_bundle
from simclr_ad.errors import UserError
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
) -> None:
    """Serve ``model`` (bundle folder or ``.onnx``) until interrupted.

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
    if workers == 1:
        _serve_in_process(model, host, port, device, max_batch, limits, api_key)
    else:
        _serve_workers(model, host, port, workers, device, max_batch, limits, api_key)


def _serve_in_process(
    model: Path,
    host: str,
    port: int,
    device: str,
    max_batch: int,
    limits: UploadLimits,
    api_key: str | None,
) -> None:
    import uvicorn

    from simclr_ad.pipeline import resolve_device
    from simclr_ad.predictor import open_predictor

    predictor = open_predictor(model, resolve_device(device))
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
) -> None:
    """``workers`` processes, each loading the model (told by variables); none loaded here."""
    import uvicorn

    check_model(model)
    check_port_free(host, port)
    os.environ |= {
        service_app.MODEL_ENV: str(model.resolve()),
        service_app.DEVICE_ENV: device,
        service_app.BATCH_ENV: str(max_batch),
        service_app.MAX_BYTES_ENV: str(limits.max_bytes),
        service_app.MAX_PIXELS_ENV: str(limits.max_pixels),
        "SIMCLR_AD_WORKERS": str(workers),
    }
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

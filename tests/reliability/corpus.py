"""A corpus of broken and unusual image files, generated on the spot (nothing binary is checked in).

Each :class:`Case` writes one file and says what every entry point should do with it:
``readable`` files (odd modes, EXIF rotation, a 1×1 image, a non-UTF-8 name) are used like any
other image; the others are skipped with a counted warning or refused with one line, never a
traceback.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def _rgb(size: tuple[int, int] = (40, 40), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def declared_size_png(width: int, height: int) -> bytes:
    """A small PNG whose header declares width × height pixels (a decompression bomb's header)."""
    data = bytearray(_encode(Image.new("RGB", (8, 8), (120, 120, 120)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])  # size, depth, colour, ...
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return _encode(_rgb((48, 32)), "JPEG", exif=exif.tobytes())


def _palette_with_transparency() -> bytes:
    image = _rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _encode(image, "PNG", transparency=0)


def _sixteen_bit() -> bytes:
    ramp = (np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40).astype(np.uint16)
    return _encode(Image.fromarray(ramp), "PNG")


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus file: its name, how to make its bytes, and whether it is a usable image."""

    name: str
    filename: str | bytes  # bytes: a file name that is not valid UTF-8
    make: Callable[[], bytes]
    readable: bool

    def write(self, folder: Path) -> Path:
        """Write the file into ``folder``; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        name = os.fsdecode(self.filename)
        path = folder / name
        path.write_bytes(self.make())
        return path


IMAGE_CASES: tuple[Case, ...] = (
    Case("zero_byte", "zero_byte.png", lambda: b"", readable=False),
    Case("truncated_png", "truncated.png", lambda: _encode(_rgb(), "PNG")[:200], readable=False),
    Case("truncated_jpeg", "truncated.jpg", lambda: _encode(_rgb(), "JPEG")[:300], readable=False),
    Case("text_as_png", "text.png", lambda: b"this is not an image\n" * 10, readable=False),
    Case(
        "decompression_bomb",
        "bomb.png",
        lambda: declared_size_png(20_000, 20_000),
        readable=False,
    ),
    Case("one_pixel", "one_pixel.png", lambda: _encode(_rgb((1, 1)), "PNG"), readable=True),
    Case("sixteen_bit_png", "sixteen_bit.png", _sixteen_bit, readable=True),
    Case("cmyk_jpeg", "cmyk.jpg", lambda: _encode(_rgb().convert("CMYK"), "JPEG"), readable=True),
    Case("palette_transparency", "palette.png", _palette_with_transparency, readable=True),
    Case("exif_rotated_jpeg", "exif_rotated.jpg", _exif_rotated_jpeg, readable=True),
    Case("non_utf8_name", b"caf\xe9_\xff.png", lambda: _encode(_rgb(), "PNG"), readable=True),
)
UNREADABLE = tuple(c for c in IMAGE_CASES if not c.readable)


def good_images(folder: Path, n: int, size: int = 40, seed: int = 0) -> list[Path]:
    """``n`` small random RGB PNGs named 000.png, 001.png, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        _rgb((size, size), seed=seed + i).save(path)
        paths.append(path)
    return paths


def symlink_loops(folder: Path) -> None:
    """A directory symlink pointing to its parent and a file symlink pointing to itself."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "self.png").symlink_to(folder / "self.png")


MARKER = 1.2345  # the value of training_payload's weights: bytes easy to find in the file


def training_payload(epoch: int = 1) -> dict[str, Any]:
    """The entries a training checkpoint must hold, with a recognisable weight tensor."""
    return {
        "epoch": epoch,
        "total_epochs": 3,
        "config": {"lr": 0.001},
        "model": {"w": torch.full((256,), MARKER)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0]}]},
        "scheduler": {"last_epoch": 4},
    }

"""Uploads decode exactly as files do, so the service and ``predict`` score the same pixels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr_ad.data.images import read_rgb
from simclr_ad.service.uploads import UploadError, UploadLimits, decode_upload


@pytest.mark.parametrize("side", [64, 200, 300])  # no resize, shrink < 2x, shrink >= 2x
def test_upload_decodes_like_the_file(tmp_path: Path, side: int) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "part.png"
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    uploaded = decode_upload(path.read_bytes(), 64, UploadLimits())
    np.testing.assert_array_equal(uploaded, read_rgb(path, 64))


def test_upload_header_limits_apply_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(path)
    with pytest.raises(UploadError) as error:
        decode_upload(path.read_bytes(), 64, UploadLimits(max_pixels=10_000))
    assert error.value.status == 413

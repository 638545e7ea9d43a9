import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from torch import Tensor

from simclr_ad.predictor import Prediction, Predictor
from simclr_ad.service.batching import MicroBatcher


class _Recorder(Predictor):
    """Scores an image by its first pixel; records batch sizes and the threads that ran."""

    def __init__(self) -> None:
        self.image_size, self.categories, self.metadata = 2, ["a", "b"], {}
        self.batches: list[tuple[str, int]] = []
        self.threads: set[str] = set()

    def predict(self, pixels: Tensor, category: str, *, maps: bool = False) -> list[Prediction]:
        if category == "b":
            raise RuntimeError("model failure")
        time.sleep(0.02)
        self.batches.append((category, pixels.shape[0]))
        self.threads.add(threading.current_thread().name)
        return [Prediction(category, float(p[0, 0, 0]), 0.0, 1.0, False) for p in pixels]


def test_concurrent_requests_share_batches_on_one_thread() -> None:
    recorder = _Recorder()
    batcher = MicroBatcher(recorder, max_batch=4, max_wait_s=0.05)
    images = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        scores = list(pool.map(lambda im: batcher.predict(im, "a").score, images))
    batcher.close()
    assert scores == [float(i) for i in range(12)]  # each request gets its own answer
    assert max(size for _, size in recorder.batches) > 1
    assert all(size <= 4 for _, size in recorder.batches)
    assert sum(size for _, size in recorder.batches) == 12
    assert recorder.threads == {"simclr-ad-model"}


def test_a_failure_reaches_its_requests_and_the_thread_lives_on() -> None:
    batcher = MicroBatcher(_Recorder(), max_batch=2)
    with pytest.raises(RuntimeError, match="model failure"):
        batcher.predict(np.zeros((2, 2, 3), np.uint8), "b")
    assert batcher.predict(np.full((2, 2, 3), 7, np.uint8), "a").score == 7.0
    batcher.close()

"""Micro-batching: concurrent requests share one forward pass, run by a single model thread.

Only the model thread touches the predictor, so requests are safe to arrive concurrently
(the thread is the lock). It takes the first waiting request, gathers more for up to
``max_wait_s`` (at most ``max_batch``), and scores each category's images in one batch.
``max_batch=1`` serves requests one at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from simclr_ad.predictor import Prediction, Predictor, stack_images

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Request:
    rgb: np.ndarray  # S×S×3 uint8
    category: str
    maps: bool
    result: Future[Prediction]


class MicroBatcher:
    """Runs ``predictor`` on a thread of its own over batches of queued requests.

    Args:
        predictor: the model; used by the batcher's thread only.
        max_batch: most images per forward pass.
        max_wait_s: how long the first request of a batch waits for company.
    """

    def __init__(self, predictor: Predictor, max_batch: int = 8, max_wait_s: float = 0.005):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="simclr-ad-model", daemon=True)
        self._thread.start()

    def predict(self, rgb: np.ndarray, category: str, *, maps: bool = False) -> Prediction:
        """Queue one image and wait for its prediction (raises what the model raised)."""
        result: Future[Prediction] = Future()
        self._queue.put(_Request(rgb, category, maps, result))
        return result.result()

    def close(self) -> None:
        """Stop the model thread after the queued requests."""
        self._queue.put(None)
        self._thread.join()

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and what arrives within ``max_wait_s``; whether a stop was requested."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            groups: dict[tuple[str, bool], list[_Request]] = {}
            for request in batch:
                groups.setdefault((request.category, request.maps), []).append(request)
            for (category, maps), requests in groups.items():
                self._score(category, maps, requests)

    def _score(self, category: str, maps: bool, requests: list[_Request]) -> None:
        try:
            pixels = stack_images([r.rgb for r in requests])
            predictions = self.predictor.predict(pixels, category, maps=maps)
        except Exception as exc:  # handed to every waiting request, the thread lives on
            log.exception("prediction failed")
            for request in requests:
                request.result.set_exception(exc)
            return
        for request, prediction in zip(requests, predictions, strict=True):
            request.result.set_result(prediction)

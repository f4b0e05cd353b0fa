"""Dynamic batching: images from concurrent requests scored together, on one inference thread.

An image waits at most ``max_wait_s`` after the first image of its batch arrived, and only while
more images are on their way (requests received and still decoding, see ``incoming``): a lone
request is scored at once, and one that queued while the engine was busy goes with the next batch
without further wait. At most ``max_batch`` images go in one call. The queue is bounded: ``submit`` refuses what would overflow it (the caller answers 503)
instead of letting latency grow without limit. One thread runs the engine, so batches never compete
for the cores with each other; decoding happens in a separate pool, before ``submit``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from resnet.serve.metrics import Metrics


class QueueFull(Exception):
    """The queue cannot take the images now; ``retry_after_s`` estimates when it can."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"queue full, retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Closed(Exception):
    """The batcher is shutting down and takes no new images."""


@dataclass
class _Item:
    image: torch.Tensor  # one model-ready float image (C, H, W)
    future: asyncio.Future[torch.Tensor]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Groups submitted images into batches for ``score`` (float (N, C, H, W) -> probabilities (N, K))."""

    def __init__(self, score: Callable[[torch.Tensor], torch.Tensor], *, max_batch: int, max_wait_s: float,
                 max_queue: int, metrics: Metrics) -> None:
        self._score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._pending: collections.deque[_Item] = collections.deque()
        self._wake = asyncio.Event()
        self._closed = False
        self._incoming = 0  # images received and being decoded: worth waiting for
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet-infer")
        self._task: asyncio.Task[None] | None = None
        self._seconds_per_image = 0.01  # running estimate, for Retry-After

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="resnet-batcher")

    @contextlib.contextmanager
    def incoming(self, n: int = 1) -> Iterator[None]:
        """Announce ``n`` images that are being decoded and will be submitted (or fail) inside the block."""
        self._incoming += n
        try:
            yield
        finally:
            self._incoming -= n
            self._wake.set()

    def submit(self, images: Sequence[torch.Tensor]) -> list[asyncio.Future[torch.Tensor]]:
        """Queue ``images`` (all or none); their futures resolve to probability rows."""
        if self._closed:
            raise Closed()
        if len(self._pending) + len(images) > self.max_queue:
            wait = (len(self._pending) + len(images)) * self._seconds_per_image
            raise QueueFull(max(1, int(wait + 0.999)))
        loop = asyncio.get_running_loop()
        items = [_Item(image, loop.create_future()) for image in images]
        self._pending.extend(items)
        self._metrics.queue_depth.set(len(self._pending))
        self._wake.set()
        return [item.future for item in items]

    async def close(self) -> None:
        """Take no more images, score those already queued, then stop the inference thread."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._pending[0].enqueued + self.max_wait_s
            while len(self._pending) < self.max_batch and self._incoming > 0 and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._metrics.queue_depth.set(len(self._pending))
            batch = [item for item in batch if not item.future.done()]  # a client that left was cancelled
            if batch:
                await self._score_batch(loop, batch)

    async def _score_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self._executor, self._score, torch.stack([i.image for i in batch]))
        except Exception as exc:  # an engine failure fails this batch's requests (500), not the server
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - start
        self._seconds_per_image = 0.8 * self._seconds_per_image + 0.2 * elapsed / len(batch)
        self._metrics.inference.observe(elapsed)
        self._metrics.batch_size.observe(len(batch))
        self._metrics.images.inc(len(batch))
        for item, row in zip(batch, probs):
            if not item.future.done():
                item.future.set_result(row)

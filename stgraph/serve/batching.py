"""Micro-batching: the forecast requests that wait while a forward runs go into the next forward together.

:class:`MicroBatcher` keeps a small asyncio queue. One task takes the first waiting request, every other
request already queued (up to ``max_batch``), stacks their windows ``x [1, T_in, N, C_in]`` into one batch
``[B, T_in, N, C_in]``, runs one forward in a worker thread (the event loop keeps accepting requests) and
hands each request its slice. A lone request is a batch of one: nothing waits for company.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import torch

log = logging.getLogger(__name__)


class MicroBatcher:
    """Batch concurrent forwards of ``forward(x [B, T_in, N, C_in], cov) -> tuple of [B, ...] arrays``.

    Args:
        forward: the batched forward (:meth:`stgraph.serve.engine.Engine.forward`).
        max_batch: most windows in one forward.
    """

    def __init__(self, forward, max_batch: int = 32) -> None:
        self.forward, self.max_batch = forward, max_batch
        self.queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # the forward thread gets the process's torch thread count: a new thread starts with OpenMP's default
        # (every core), whose spinning workers cost a 1-ms STID forward up to 100 ms on a busy machine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stgraph-forward",
                                        initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))
        self.batches: list[int] = []  #: the size of every forward run so far (for tests and the load test)

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False)

    async def submit(self, x: torch.Tensor, cov: dict) -> tuple:
        """The forward's outputs for one window ``x [1, T_in, N, C_in]``, each without the batch axis
        (``[T_out, N, C_out]``)."""
        if self.queue is None:  # used without the app's lifespan (a test calling the engine directly)
            await self.start()
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, cov, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            stackable = all(isinstance(v, torch.Tensor) for v in items[0][1].values())  # text reports: a dict
            while stackable and len(items) < self.max_batch and not self.queue.empty():
                items.append(self.queue.get_nowait())
            x = torch.cat([i[0] for i in items]) if len(items) > 1 else items[0][0]
            cov = items[0][1] if len(items) == 1 else {k: torch.cat([i[1][k] for i in items]) for k in items[0][1]}
            self.batches.append(len(items))
            try:
                out = await loop.run_in_executor(self._pool, self.forward, x, cov)
            except Exception as e:  # noqa: BLE001 - every waiting request gets the failure
                log.exception("forward failed")
                for *_, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for b, (*_, fut) in enumerate(items):
                if not fut.done():
                    fut.set_result(tuple(None if a is None else a[b] for a in out))

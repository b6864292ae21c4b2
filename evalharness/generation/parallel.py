"""Data-parallel generation: N worker processes, each holding its own engine, share one ``generate`` call.

Requests are dealt round-robin over the workers and the samples come back in request order. A worker never touches
the store: it returns samples, and the caller writes them (the store's one-writer rule). Since every request carries
its own seed, a sample does not depend on which worker drew it or what it was batched with, so N workers store the
same samples as one (up to the float noise the hf backend notes across batch shapes).

Devices: on CUDA, worker i sees only its own GPUs (``CUDA_VISIBLE_DEVICES``, set before it imports torch): GPU i, or
with vLLM's tensor parallelism of size t the t GPUs from i·t. With no GPU (the hf backend on CPU) the workers split the
cores between them. Workers are started with "spawn": a forked copy of a process that has touched CUDA or a thread pool
is not safe to use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback

from evalharness.config import ConfigError
from evalharness.generation.base import Request, Sample, Sampling


def device_groups(workers: int, per_worker: int, gpus: int) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each worker, or None for each when there is no GPU.

    >>> device_groups(2, 1, 2), device_groups(2, 2, 4), device_groups(3, 1, 0)
    (['0', '1'], ['0,1', '2,3'], [None, None, None])
    """
    if gpus == 0:
        return [None] * workers
    if workers * per_worker > gpus:
        raise ConfigError(f"--data-parallel {workers} x --tensor-parallel-size {per_worker} needs "
                          f"{workers * per_worker} GPUs; this machine has {gpus}")
    return [",".join(str(w * per_worker + j) for j in range(per_worker)) for w in range(workers)]


def _worker(conn, backend: str, model_path: str, kwargs: dict, devices: str | None, threads: int | None) -> None:
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from evalharness.generation.backends import load_generator

        generator = load_generator(backend, model_path, **kwargs)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            break
        if job is None:
            break
        requests, sampling = job
        try:
            conn.send(("ok", generator.generate(requests, sampling)))
        except Exception:  # noqa: BLE001 - the parent raises it with the worker's traceback
            conn.send(("error", traceback.format_exc()))
    generator.close()


def deal(requests: list[Request], n: int) -> list[list[Request]]:
    """Requests dealt round-robin over ``n`` engines: shard ``i`` is ``requests[i::n]``."""
    return [requests[i::n] for i in range(n)]


def gather(total: int, n: int, results, progress=None) -> list[Sample]:
    """The samples of ``total`` dealt requests in request order. ``results`` yields ``(i, get)`` for every busy shard,
    in the order they finish; ``get()`` returns shard ``i``'s samples or raises RuntimeError. Every shard is collected
    before the first error is raised, so no engine is left mid-call."""
    out: list[Sample | None] = [None] * total
    error = None
    for i, get in results:
        try:
            samples = get()
        except RuntimeError as e:
            error = error or e
            continue
        out[i::n] = samples
        if progress is not None:
            from evalharness.generation.hf import report_progress

            report_progress(progress, sum(s is not None for s in out), len(samples))
    if error is not None:
        raise error
    return out


class ParallelGenerator:
    """The Generator contract over ``workers`` processes, each running ``load_generator(backend, model_path, **kw)``."""

    def __init__(self, workers: int, backend: str, model_path: str, devices: list[str | None], **kwargs):
        self.name = backend
        ctx = mp.get_context("spawn")
        threads = None if devices[0] is not None else max(1, (os.cpu_count() or 1) // workers)
        self._workers = []
        try:
            for d in devices:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, backend, str(model_path), kwargs, d, threads),
                                   name="evalharness-generate")
                proc.start()
                child.close()
                self._workers.append((parent, proc))
            for i, (conn, _) in enumerate(self._workers):
                self._receive(i, conn)
        except BaseException:
            self.close()
            raise

    def _receive(self, i: int, conn):
        try:
            status, value = conn.recv()
        except EOFError:
            raise RuntimeError(f"generation worker {i} died (exit code {self._workers[i][1].exitcode})") from None
        if status == "error":
            raise RuntimeError(f"generation worker {i} failed: {value}")
        return value

    def generate(self, requests: list[Request], sampling: Sampling, progress=None) -> list[Sample]:
        n = len(self._workers)
        shards = deal(requests, n)
        busy = [i for i, shard in enumerate(shards) if shard]
        for i in busy:
            self._workers[i][0].send((shards[i], sampling))
        # every busy worker is read before raising, so none is left holding an unread answer
        return gather(len(requests), n, ((i, lambda i=i: self._receive(i, self._workers[i][0])) for i in busy),
                      progress)

    def close(self) -> None:
        for conn, _ in self._workers:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for conn, proc in self._workers:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join()
            conn.close()
        self._workers = []

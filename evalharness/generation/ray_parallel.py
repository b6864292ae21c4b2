"""Data-parallel generation on a Ray cluster: the N engines of ``--data-parallel`` as Ray actors, on any node.

The same contract as ``ParallelGenerator``: requests are dealt round-robin over the actors, the samples come back to
this process in request order, and only this process writes the store (actors never see it). Each actor holds
``num_gpus`` = the tensor-parallel size when the cluster has GPUs (Ray sets its ``CUDA_VISIBLE_DEVICES``), and one
CPU otherwise. Every node loads the model from the same path, so checkpoints must sit where every node reads them.

Ray is optional (``pip install 'evalharness[ray]'``): ``check_ray_address`` refuses an address when it is missing,
before anything runs.
"""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager

from evalharness.config import ConfigError, check_text
from evalharness.generation.base import Request, Sample, Sampling

INSTALL = "install the ray extra: pip install 'evalharness[ray]'"


def check_ray_address(address: str | None) -> None:
    """An address is given as text, and Ray must be importable to use it."""
    if address is None:
        return
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(f"ray_address must be a cluster address, 'auto' or 'local', got {address!r}")
    check_text("ray_address", address)
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"--ray-address {address} needs Ray, which is not installed: {INSTALL}")


def actor_resources(workers: int, per_worker: int, cluster_gpus: float) -> dict[str, float]:
    """The resources each actor asks for. Asking for more GPUs than the cluster has would leave the actors pending
    forever, so it is refused instead.

    >>> actor_resources(2, 2, 4), actor_resources(3, 1, 0)
    ({'num_gpus': 2, 'num_cpus': 1}, {'num_gpus': 0, 'num_cpus': 1})
    """
    if cluster_gpus == 0:
        return {"num_gpus": 0, "num_cpus": 1}
    if workers * per_worker > cluster_gpus:
        raise ConfigError(f"--data-parallel {workers} x --tensor-parallel-size {per_worker} needs "
                          f"{workers * per_worker} GPUs; the Ray cluster has {cluster_gpus:g}")
    return {"num_gpus": per_worker, "num_cpus": 1}


class _Engine:
    """One engine inside a Ray actor."""

    def __init__(self, backend: str, model_path: str, kwargs: dict, threads: int):
        import torch

        torch.set_num_threads(threads)  # the CPUs Ray gave this actor, not the whole node's
        from evalharness.generation.backends import load_generator

        self.generator = load_generator(backend, model_path, **kwargs)

    def ready(self) -> bool:
        return True

    def generate(self, requests: list[Request], sampling: Sampling) -> list[Sample]:
        return self.generator.generate(requests, sampling)

    def close(self) -> None:
        self.generator.close()


def _connect(address: str):
    import ray

    if ray.is_initialized():  # a caller that started Ray itself (a notebook, a test) keeps its own session
        return ray, False
    try:
        if address == "local":  # a fresh single-node cluster in this process's lifetime
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, ValueError) as e:
        raise ConfigError(f"could not connect to the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    return ray, True


@contextmanager
def ray_session(address: str | None, workers: int, gpus_per_engine: int):
    """Connected to the cluster for a whole ``generate`` (every checkpoint's engines), and checked that it can hold
    the engines, before anything is written. Shut down after it only when this process started it."""
    if address is None:
        yield
        return
    ray, owned = _connect(address)
    try:
        actor_resources(workers, gpus_per_engine, ray.cluster_resources().get("GPU", 0))
        yield
    finally:
        if owned:
            ray.shutdown()


class RayGenerator:
    """The Generator contract over ``workers`` Ray actors, each running ``load_generator(backend, model_path, **kw)``."""

    def __init__(self, address: str, workers: int, backend: str, model_path: str, gpus_per_engine: int = 1,
                 **kwargs):
        self.name = backend
        self._ray, self._owns_session = _connect(address)
        ray = self._ray
        self._actors = []
        try:
            resources = actor_resources(workers, gpus_per_engine,
                                        ray.cluster_resources().get("GPU", 0))
            actor = ray.remote(_Engine).options(**resources, max_concurrency=1)
            self._actors = [actor.remote(backend, str(model_path), kwargs, resources["num_cpus"])
                            for _ in range(workers)]
            for i, ready in enumerate([a.ready.remote() for a in self._actors]):
                self._get(i, ready)
        except BaseException:
            self.close()
            raise

    def _get(self, i: int, ref):
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayError as e:
            raise RuntimeError(f"generation actor {i} failed: {str(e).strip().splitlines()[-1]}") from None

    def generate(self, requests: list[Request], sampling: Sampling, progress=None) -> list[Sample]:
        from evalharness.generation.parallel import deal, gather

        n = len(self._actors)
        pending = {self._actors[i].generate.remote(shard, sampling): i
                   for i, shard in enumerate(deal(requests, n)) if shard}

        def finished():
            while pending:
                [ref], _ = self._ray.wait(list(pending), num_returns=1)
                i = pending.pop(ref)
                yield i, lambda i=i, ref=ref: self._get(i, ref)

        return gather(len(requests), n, finished(), progress)

    def close(self) -> None:
        ray = self._ray
        for a in self._actors:
            try:
                ray.get(a.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to close
                pass
            ray.kill(a)
        self._actors = []
        if self._owns_session and ray.is_initialized():
            ray.shutdown()
            self._owns_session = False

"""A persistent pool of gloo processes for the distributed tests: spawned once per pytest
process (each pytest-xdist worker gets its own), reused by every test, restarted after a hang,
a crash or a test whose ranks disagreed (one raised, one did not: the group may be out of step).

Each task is the name of a function in ``tests/distributed_cases.py`` and its keyword arguments;
every rank calls ``fn(rank, world_size, **kwargs)`` and sends back its result (``torch.save``
bytes) or its traceback. The store is a ``FileStore`` in a fresh temporary directory, so pools in
parallel pytest workers never share a port or a file.
"""

from __future__ import annotations

import datetime
import io
import os
import queue
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any

import torch
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIVE_TIMEOUT = 30  # seconds: a collective that waits this long raises on its rank
TASK_TIMEOUT = 120  # seconds: a task slower than this is a hang (the pool is restarted)


def available() -> str | None:
    """``None`` if a gloo pool can run here, else the reason why not."""
    import torch.distributed as dist

    if not dist.is_available():
        return "torch.distributed is not available in this build of torch"
    if not dist.is_gloo_available():
        return "torch.distributed has no gloo backend in this build of torch"
    return None


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _worker(rank: int, world_size: int, store_path: str, tasks: Any, results: Any) -> None:
    sys.path.insert(0, ROOT)
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch._C._functorch._set_vmap_fallback_enabled(False)  # as conftest: a fallback fails
    warnings.simplefilter("error")
    for message in ("`torch.jit.script", ".*should not be instantiated", "mypy_extensions"):
        warnings.filterwarnings("ignore", message=message)
    store = dist.FileStore(store_path, world_size)
    dist.init_process_group(
        "gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT),
    )
    from tests import distributed_cases

    while True:
        task = tasks.get()
        if task is None:
            results.close()
            results.join_thread()  # flush the queue's feeder thread, then leave at once
            os._exit(0)  # (destroy_process_group would wait for the other rank)
        name, kwargs = task
        try:
            result = getattr(distributed_cases, name)(rank, world_size, **kwargs)
            results.put((rank, True, _dumps(result)))
        except BaseException:
            results.put((rank, False, traceback.format_exc()))


class RankError(AssertionError):
    """A rank raised; ``tracebacks`` has every rank's outcome (None where it succeeded)."""

    def __init__(self, tracebacks: list[str | None]) -> None:
        self.tracebacks = tracebacks
        text = "\n".join(f"--- rank {r} ---\n{t}" for r, t in enumerate(tracebacks) if t)
        super().__init__(text)


class Pool:
    def __init__(self, world_size: int = 2) -> None:
        self.world_size = world_size
        self.processes: list[Any] = []
        self.spawns = 0

    def _start(self) -> None:
        context = mp.get_context("spawn")
        self.directory = tempfile.mkdtemp(prefix="funcloss-gloo-")
        store_path = os.path.join(self.directory, "store")
        self.tasks = [context.Queue() for _ in range(self.world_size)]
        self.results = context.Queue()
        self.processes = [
            context.Process(
                target=_worker,
                args=(rank, self.world_size, store_path, self.tasks[rank], self.results),
                daemon=True,
            )
            for rank in range(self.world_size)
        ]
        for process in self.processes:
            process.start()
        self.spawns += 1

    def run(self, name: str, **kwargs: Any) -> list[Any]:
        """Every rank's result of ``distributed_cases.<name>(rank, world_size, **kwargs)``;
        raises :class:`RankError` if a rank raised."""
        if not self.processes or not all(p.is_alive() for p in self.processes):
            self.close()
            self._start()
        for tasks in self.tasks:
            tasks.put((name, kwargs))
        outcomes: dict[int, tuple[bool, Any]] = {}
        deadline = time.monotonic() + TASK_TIMEOUT
        while len(outcomes) < self.world_size:
            try:
                rank, ok, payload = self.results.get(timeout=1)
            except queue.Empty:
                dead = [r for r, p in enumerate(self.processes) if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    self.close()
                    why = f"rank(s) {dead} died" if dead else "timed out"
                    message = f"distributed task {name}: {why}; pool restarted"
                    raise AssertionError(message) from None
                continue
            outcomes[rank] = (ok, payload)
        if all(ok for ok, _ in outcomes.values()):
            return [torch.load(io.BytesIO(outcomes[r][1])) for r in range(self.world_size)]
        tracebacks = [None if outcomes[r][0] else outcomes[r][1] for r in range(self.world_size)]
        if any(t is None for t in tracebacks):
            self.close()  # the ranks went different ways: start clean
        raise RankError(tracebacks)

    def close(self) -> None:
        for tasks in getattr(self, "tasks", []):
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()  # only the processes this pool started
                process.join(timeout=5)
        self.processes = []
        if getattr(self, "directory", None):
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

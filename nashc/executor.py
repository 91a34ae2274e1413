"""Where candidate evaluations run: local worker processes or a Ray cluster.

The compile pipeline's per-candidate work (the coarse stage's zero-shot scoring, the fine
stage's FINN lowering of each survivor) is a plain function of picklable arguments whose
result depends only on them (every candidate's weights and scoring batch are fixed by the
seed). An executor maps such a function over items and returns the results in order:

- `LocalExecutor` (the default, ``--executor local``): ``jobs`` worker processes
  (``spawn``, one PyTorch thread each) or, with ``jobs=1``, the calling process;
- `RayExecutor` (``--executor ray [--address ADDR]``): Ray tasks of one CPU each, on a
  running cluster (``address="auto"`` or ``"ray://host:10001"``) or a local Ray started
  for the run (``address=None``, ``num_cpus`` CPUs).

The function is sent to each worker once per `map` call with a new function (a
``functools.partial`` holding the network and scoring batch is the usual one), not once
per item. Both executors give identical results for the same function and items.

Cluster use: every node needs the same Python environment with nashc installed (or pass
``runtime_env={"working_dir": ...}``/``{"pip": [...]}`` to `RayExecutor`); start the head
with ``ray start --head`` and the workers with ``ray start --address HEAD:6379``, then
``nashc compile FILE --executor ray --address auto`` on the head (docs/cluster.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "ExecutorError", "make_executor",
           "EXECUTORS"]

EXECUTORS = ("local", "ray")


class ExecutorError(RuntimeError):
    """An executor cannot be started (e.g. Ray missing or its cluster unreachable)."""


class Executor(Protocol):
    """Maps a picklable function over items, results in the items' order."""

    name: str
    workers: int

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]: ...

    def close(self) -> None: ...


def _setup_worker() -> None:
    """One PyTorch thread per worker (the workers share the cores), quiet loggers."""
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for name in ("finn", "finn_logger", "qonnx", "brevitas", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


_LOCAL_FN: Callable[[Any], Any] | None = None


def _local_init(fn: Callable[[Any], Any]) -> None:
    global _LOCAL_FN
    _setup_worker()
    _LOCAL_FN = fn


def _local_call(item: Any) -> Any:
    assert _LOCAL_FN is not None
    return _LOCAL_FN(item)


class LocalExecutor:
    """`jobs` worker processes (spawned at the first `map`, kept while the function is
    the same), or the calling process when ``jobs <= 1`` (single-threaded PyTorch during
    the call, as in the workers, so the figures do not depend on `jobs`)."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.workers = max(1, int(jobs))
        self._pool: Any = None
        self._fn: Callable[[Any], Any] | None = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        if self.workers <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return [fn(item) for item in items]
            finally:
                torch.set_num_threads(threads)
        if self._pool is None or self._fn is not fn:
            self._shutdown()
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_local_init, initargs=(fn,))
            self._fn = fn
        import signal

        # workers are spawned on submission: with SIGINT ignored meanwhile they start
        # ignoring it (an ignored signal stays ignored across exec; Python then installs
        # no KeyboardInterrupt handler), so a Ctrl-C while they import torch prints no
        # traceback from them; the main process stops the search
        try:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            return list(self._pool.map(_local_call, items))
        try:
            results = self._pool.map(_local_call, items)
        finally:
            signal.signal(signal.SIGINT, old)
        return list(results)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._fn = None

    def close(self) -> None:
        self._shutdown()


class _Captured:
    def __init__(self, file: Any) -> None:
        self.file = file

    def text(self) -> str:
        self.file.seek(0)
        return str(self.file.read().decode("utf-8", "replace"))


@contextmanager
def _stderr_captured() -> Iterator[_Captured]:
    """File descriptor 2 goes to a temporary file meanwhile: Ray's C++ core prints notices
    there while it starts ("Token authentication is enabled for this Ray cluster ..."),
    which are not the nashc user's business; on a failed start the caller quotes them."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield _Captured(tmp)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def _not_captured() -> Iterator[_Captured]:
    import io

    yield _Captured(io.BytesIO())


@contextmanager
def _sigint_deferred() -> Iterator[list[bool]]:
    """SIGINT (Ctrl-C) is recorded meanwhile instead of raising KeyboardInterrupt: the
    yielded list holds True once one arrived. Outside the main thread, nothing changes."""
    import signal

    got: list[bool] = []

    def record(signum: int, frame: Any) -> None:
        got.append(True)

    try:
        old = signal.signal(signal.SIGINT, record)
    except ValueError:  # not the main thread
        yield got
        return
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)


_RAY_FN_CACHE: dict[str, Callable[[Any], Any]] = {}
_RAY_SETUP = False


def _ray_call(fn_box: list[Any], item: Any) -> Any:
    """A Ray task: the function arrives as an object reference inside a list (so Ray does
    not resolve it per task), fetched and kept per worker process once per reference."""
    import ray

    global _RAY_SETUP
    if not _RAY_SETUP:
        _setup_worker()
        _RAY_SETUP = True
    ref = fn_box[0]
    key = ref.hex()
    fn = _RAY_FN_CACHE.get(key)
    if fn is None:
        fn = ray.get(ref)
        _RAY_FN_CACHE.clear()  # keep only the current function
        _RAY_FN_CACHE[key] = fn
    return fn(item)


class RayExecutor:
    """Ray tasks of one CPU each. ``address=None`` starts a local Ray with `num_cpus`
    CPUs (default: all) for this executor and stops it on `close`; an address connects
    to a running cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``).

    Raises `ExecutorError` when Ray is not installed or cannot start/connect."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        try:
            import ray
        except ImportError as err:  # pragma: no cover - ray is a dependency of nashc
            raise ExecutorError("--executor ray needs the ray package (pip install ray)") \
                from err
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
            if runtime_env:
                kw["runtime_env"] = runtime_env
            if address is None:
                kw["num_cpus"] = num_cpus or os.cpu_count() or 1
            else:
                kw["address"] = address
            # a local Ray: its start-up notices are not printed and a Ctrl-C waits for
            # the start to finish (seconds; see below). Connecting to a cluster starts no
            # process here, so Ray's connection retries stay visible and interruptible
            local = address is None
            capture: AbstractContextManager[_Captured] = (
                _stderr_captured() if local else _not_captured())
            defer: AbstractContextManager[list[bool]] = (
                _sigint_deferred() if local else nullcontext([]))
            with capture as captured, defer as interrupted:
                try:
                    ray.init(**kw)
                except Exception as err:  # ray raises ConnectionError, RuntimeError, ...
                    where = f"the Ray cluster at {address}" if address else "a local Ray"
                    said = captured.text().strip().splitlines()[-3:]
                    raise ExecutorError(f"cannot start {where}: {err}"
                                        + "".join(f"\n  Ray: {line}" for line in said)) \
                        from err
            if interrupted:
                # Ctrl-C while Ray started: its processes (GCS, raylet, agents) exist now,
                # so stop them before stopping (interrupted inside ray.init, Ray would not
                # know the ones it had started, and its agents outlived the run)
                ray.shutdown()
                raise KeyboardInterrupt
            self._owns = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1)(_ray_call)
        self._fn: Callable[[Any], Any] | None = None
        self._fn_ref: Any = None

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        items = list(items)
        if not items:
            return []
        if self._fn is not fn:
            self._fn_ref = self._ray.put(fn)
            self._fn = fn
        refs = [self._task.remote([self._fn_ref], item) for item in items]
        return list(self._ray.get(refs))

    def close(self) -> None:
        self._fn = None
        self._fn_ref = None
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False


def make_executor(kind: str = "local", jobs: int | None = None,
                  address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor named by ``--executor`` (`EXECUTORS`): local with `jobs` workers
    (default one per core, at most 2), or Ray at `address` (None: a local Ray with
    `jobs` CPUs, default all). Raises `ExecutorError` for an unknown kind."""
    if kind == "local":
        if jobs is None:
            jobs = max(1, min(2, os.cpu_count() or 1))
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=jobs)
    raise ExecutorError(f"unknown executor {kind!r} (expected one of {', '.join(EXECUTORS)})")

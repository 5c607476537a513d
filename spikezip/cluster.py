"""Sweeps and sharded simulations on Dask distributed.

One design point of a sweep costs minutes of synthesis and place and route, and a large batch of
simulations splits into independent shards: both are a set of independent tasks. They run on a
Dask cluster (``distributed``), never on a scheduler of our own:

* by default a :class:`distributed.LocalCluster` on this machine: ``workers`` processes, one
  thread each (synthesis, place and route and the simulators are single-threaded Python or
  subprocesses), no dashboard, its HTTP server on a free port (no clash with another run on
  8787), no memory limit (a worker
  is never restarted for the memory a place and route takes);
* or an existing cluster, by its scheduler's address (``tcp://host:8786``), reached within
  :data:`CONNECT_TIMEOUT` seconds or refused with one line. Its workers must see the same files:
  the build directory of a simulation, at the same absolute path (a shared filesystem), and the
  same Python environment.

:func:`run_streamed` submits the tasks and hands each result to a callback **as it finishes**
(``as_completed``), in completion order; a task that raises is recorded as a :class:`TaskError`
(one line) and the others go on. On an interrupt (Ctrl-C, SIGTERM) or any other exception the
futures are cancelled and, for the local cluster, the cluster is closed, which ends its worker
processes, and then what they started is killed if it still runs (a synthesis tool; a simulator
of :func:`sim.runner.run_cocotb_isolated` dies by itself with its caller); on an existing cluster
a task that already runs finishes there (Dask cannot stop a running task), its result is
dropped.

:func:`simulate_shards` splits a batch into contiguous chunks, simulates each on a worker
(:func:`sim.simulate.simulate`, one run folder each under the shared, lock-protected design
cache) and merges the runs in input order (:func:`sim.simulate.merge_runs`: spikes, busy flags,
steps bit-identical to one run; cycle stamps re-based, see there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distributed import Client

    from spikezip.hw.model.design import DesignParams
    from spikezip.ir import Network
    from spikezip.sim.simulate import HardwareRun

__all__ = [
    "CONNECT_TIMEOUT",
    "SchedulerError",
    "TaskError",
    "check_address",
    "dask_client",
    "dask_setup",
    "run_streamed",
    "simulate_shards",
]

#: Seconds to wait for an existing scheduler before giving up (``--scheduler``).
CONNECT_TIMEOUT = 5.0

_ADDRESS = re.compile(
    r"(?:(?P<scheme>tcp|tls|ws|wss)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d+)"
)


class SchedulerError(RuntimeError):
    """The scheduler at the given address could not be reached (one-line message)."""


@dataclass(frozen=True)
class TaskError:
    """A task that raised: its exception as one line (``TypeName: first line``)."""

    error: str

    @classmethod
    def of(cls, exc: BaseException) -> TaskError:
        lines = str(exc).strip().splitlines()
        return cls(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


def check_address(address: str) -> str:
    """``address`` if it is a scheduler address ``[tcp|tls|ws|wss://]host:port``, else
    :class:`ValueError` (checked before any connection, so a typo fails at once)."""
    m = _ADDRESS.fullmatch(address)
    if m is None or not 1 <= int(m["port"]) <= 65535:
        raise ValueError(
            f"must be a scheduler address [tcp://]HOST:PORT (port 1..65535), not {address!r}"
        )
    return address


@contextlib.contextmanager
def dask_client(
    scheduler: str | Client | None = None,
    *,
    workers: int = 1,
    timeout: float | None = None,
) -> Iterator[Client]:
    """A Dask client for the block: on ``scheduler`` (an address, reached within ``timeout``
    seconds, default :data:`CONNECT_TIMEOUT`, or a client used as it is and left open), or on
    a new local cluster of ``workers`` processes, closed with its workers when the block ends,
    however it ends."""
    from distributed import Client

    timeout = CONNECT_TIMEOUT if timeout is None else timeout

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # the caller's client: theirs to close
        return
    if scheduler is not None:
        check_address(scheduler)
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except Exception as e:  # refused, timed out, or not a Dask scheduler at all
            line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            text = f"cannot reach the Dask scheduler at {scheduler}: {line}"
            raise SchedulerError(text) from None
        try:
            yield client
        finally:
            client.close()
        return
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=max(1, int(workers)),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},  # its HTTP server (no dashboard): any port
        memory_limit=0,
        preload=["spikezip.cluster"],  # dask_setup: Ctrl-C is the parent's to handle
        silence_logs=logging.CRITICAL,  # a failed task is reported by its result, not logged
    )
    try:
        with Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        stray = _started_by(cluster)
        cluster.close()  # ends the workers (a running simulation's folder is left for its
        _end(stray)  # caller to remove: remove_dead_runs); then what they started, if alive


def dask_setup(worker) -> None:
    """In each worker of :func:`dask_client`'s local cluster (a Dask preload), at its start:
    ignore SIGINT. A terminal's Ctrl-C reaches the whole process group; the parent handles it
    (cancels, closes the cluster, which ends the workers) and a worker interrupted on its own
    would only print a traceback on the way."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _started_by(cluster) -> list:
    """The processes the local cluster's workers started and that still run (a synthesis tool,
    say), found before the workers end (their children are then re-parented)."""
    import psutil

    out = []
    for nanny in list(cluster.workers.values()):
        pid = getattr(nanny, "pid", None)
        if isinstance(pid, int):  # (psutil.Process(None) would be this process)
            with contextlib.suppress(psutil.Error):
                out += psutil.Process(pid).children(recursive=True)
    return out


def _end(processes: list) -> None:
    """Kill ``processes`` (psutil, so a pid reused since is spared) and reap them: a worker
    ended by the cluster's close would leave its children running (``hw.flow.synth`` runs yosys
    and nextpnr as subprocesses)."""
    import psutil

    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(processes, timeout=5)


def run_streamed(
    client: Client,
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    on_done: Callable[[int, Any], None] | None = None,
    stop_on_error: bool = False,
) -> list[Any]:
    """``fn(item)`` for every item on ``client``'s workers; the results in item order.

    ``on_done(index, result)`` is called in this thread as each task finishes (completion
    order). A task that raises gives a :class:`TaskError` in its place, or, with
    ``stop_on_error``, its exception is raised after the other tasks are cancelled. On any
    exception here (``KeyboardInterrupt`` included) the unfinished tasks are cancelled before it
    propagates.
    """
    from distributed import as_completed

    futures = [client.submit(fn, item, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    try:
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            if future.status == "error":
                exc = future.exception()
                if stop_on_error:
                    raise exc
                results[i] = TaskError.of(exc)
            else:
                results[i] = future.result()
            future.release()
            if on_done is not None:
                on_done(i, results[i])
    except BaseException:
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)
        raise
    return results


def _simulate_job(job: tuple) -> HardwareRun:
    from spikezip.sim.simulate import simulate

    network, inputs, params, kw = job
    return simulate(network, inputs, params, **kw)


def simulate_shards(
    network: Network,
    inputs: np.ndarray,
    params: DesignParams | None = None,
    *,
    shards: int,
    scheduler: str | Client | None = None,
    root: str | os.PathLike = "build/designs",
    on_progress: Callable[[int], None] | None = None,
    **kw: Any,
) -> HardwareRun:
    """:func:`sim.simulate.simulate` of ``inputs`` split into ``shards`` contiguous chunks (at
    most one per input), each on a Dask worker, merged in input order by
    :func:`sim.simulate.merge_runs`.

    ``scheduler``: as :func:`dask_client` (default: a local cluster of ``min(shards, CPUs)``
    workers). ``root`` is made absolute here, so every worker uses the same design cache
    (concurrent runs on it are safe). ``on_progress(done)`` gets the inferences finished, as
    each shard finishes. ``**kw``: the other keywords of :func:`sim.simulate.simulate`
    (``sim``, ``valid``, ``ready``, ``seed``, ``threads``, …; not ``run_dir`` or waves: every
    shard has its own run folder). The first shard that fails raises its error, the others are
    cancelled. On an interrupt, the local cluster's workers are ended with their simulators and
    their run folders removed.
    """
    from spikezip.hw.model.design import DesignParams
    from spikezip.sim.simulate import merge_runs, remove_dead_runs

    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be a positive integer, not {shards!r}")
    for name in ("run_dir", "waves", "design_dir"):
        if kw.get(name):
            raise ValueError(f"{name} is not available with shards (each shard has its own run)")
    x = network.check_inputs(inputs)
    params = DesignParams.coerce(
        network, params, lanes=kw.pop("lanes", None), pipeline=kw.pop("pipeline", None)
    )
    chunks = [c for c in np.array_split(x, min(shards, len(x))) if len(c)]
    kw["root"] = str(Path(root).resolve())
    done = 0

    def finished(i: int, run: HardwareRun) -> None:
        nonlocal done
        done += len(run.done)
        if on_progress is not None:
            on_progress(done)

    t0 = time.perf_counter()
    workers = min(len(chunks), os.cpu_count() or 1)
    try:
        with dask_client(scheduler, workers=workers) as client:
            runs = run_streamed(
                client,
                _simulate_job,
                [(network, c, params, kw) for c in chunks],
                on_done=finished,
                stop_on_error=True,
            )
    except BaseException:
        # the local workers are gone (their simulators with them): so are their run folders
        remove_dead_runs(network, kw["root"], params, backend=kw.get("backend", "proc"))
        raise
    return merge_runs(runs, run_seconds=time.perf_counter() - t0)

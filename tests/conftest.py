"""Session fixtures shared across test packages."""

from __future__ import annotations

import signal

import pytest


@pytest.fixture(scope="session")
def digits_data():
    from spikezip.sw import digits

    return digits.load()


@pytest.fixture(scope="session")
def digits_network(tmp_path_factory):
    """The default digits QANN (trained once per session, cache in a tmp dir), converted."""
    from spikezip.sw import qann
    from spikezip.sw.convert import to_network

    model = qann.load_or_train(qann.QannConfig(), directory=tmp_path_factory.mktemp("qann"))
    return to_network(model, name="digits")


@pytest.fixture(scope="session")
def trained_vit(tmp_path_factory):
    """The default digits ViT QANN and the seconds it took to train or load: trained once per
    session, its cache shared by the xdist workers (a lock file: the first worker trains, the
    other waits and loads)."""
    import fcntl
    import os
    import time
    from pathlib import Path
    from types import SimpleNamespace

    from spikezip.sw.vit import model as vit

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    cache = Path(root) / "vit-cache"
    cache.mkdir(exist_ok=True)
    with open(Path(root) / "vit-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.perf_counter()
        model = vit.load_or_train(vit.VitConfig(), directory=cache)
        seconds = time.perf_counter() - start
    return SimpleNamespace(model=model, seconds=seconds, cache=cache)


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory):
    """The default digits CNN QANN, trained once per session into a cache shared by the xdist
    workers (as :func:`trained_vit`); ``cache`` is the directory (``SPIKEZIP_CACHE`` for CLI
    tests)."""
    import fcntl
    import os
    import time
    from pathlib import Path
    from types import SimpleNamespace

    from spikezip.sw.cnn import model as cnn

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    cache = Path(root) / "cnn-cache"
    cache.mkdir(exist_ok=True)
    with open(Path(root) / "cnn-cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.perf_counter()
        model = cnn.load_or_train(cnn.CnnConfig(), directory=cache)
        seconds = time.perf_counter() - start
    return SimpleNamespace(model=model, seconds=seconds, cache=cache)


def default_sigint() -> None:
    """In a child before it runs the CLI: Ctrl-C as in a terminal. A suite started as a
    background job (``make test &``, ``nohup``) inherits SIGINT ignored, and Python then
    installs no KeyboardInterrupt handler in the child: the SIGINT tests would fail."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _keeps_sigint_handled():
    """No test may leave its process ignoring Ctrl-C: every subprocess it starts later (the CLI
    under test) would inherit SIG_IGN, and Python then installs no KeyboardInterrupt handler."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is signal.SIG_IGN and before is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, before)
        pytest.fail("this test left SIGINT ignored in the test process")


@pytest.fixture(scope="module")
def dask_client():
    """A 2-worker Dask ``LocalCluster`` (processes, one thread each, no dashboard) and its
    client, one per test module (starting one costs ~2 s)."""
    from spikezip.cluster import dask_client

    with dask_client(workers=2) as client:
        yield client


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the test files that start an HDL simulator first, each file's tests kept together and
    in order (module fixtures are built once). `make test` runs on 2 xdist workers: with the
    simulations at the end, the last long one ran alone while the other worker sat idle."""
    simulates = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("sim")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in simulates)

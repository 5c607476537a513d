"""Session fixtures shared across test packages."""

from __future__ import annotations

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

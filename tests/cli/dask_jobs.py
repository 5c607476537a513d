"""Sweep jobs planted by the Dask tests: module-level, so a Dask worker imports them by name."""

from __future__ import annotations

import os
import time
from pathlib import Path

from spikezip import report

#: environment variable naming the folder where :func:`hanging` marks each job it started
STARTED_ENV = "SPIKEZIP_TEST_STARTED"


def failing_at_lanes_2(job: tuple):
    """The real job, except that the point ``P=2`` raises."""
    if job[2].lanes == 2:
        raise RuntimeError("planted failure\nsecond line of the message")
    return report._eval_job(job)


def hanging(job: tuple):
    """Marks that it started (a file named after the worker's pid), then never finishes."""
    Path(os.environ[STARTED_ENV], str(os.getpid())).touch()
    while True:
        time.sleep(0.1)

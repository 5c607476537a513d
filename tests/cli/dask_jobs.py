"""Sweep jobs planted by the Dask tests: module-level, so a Dask worker imports them by name."""

from __future__ import annotations

import os
import subprocess
import sys
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
    """Starts a stand-in for a synthesis tool (a child process, as ``hw.flow.synth`` runs yosys),
    marks that it started (a file named after the worker's pid, holding the tool's), then never
    finishes."""
    tool = subprocess.Popen(  # its output goes to a log, as the real tools' does
        [sys.executable, "-c", "import time; time.sleep(600)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    Path(os.environ[STARTED_ENV], str(os.getpid())).write_text(str(tool.pid))
    while True:
        time.sleep(0.1)

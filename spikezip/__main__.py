"""``python -m spikezip``: the ``spikezip`` command line."""

import sys

from spikezip.cli import main

sys.exit(main())

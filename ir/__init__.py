"""Integer network description shared by the software reference and the hardware generators.

stdlib + numpy only: importing :mod:`ir` never loads torch or amaranth.
"""

from spikezip.ir.errors import FormatError
from spikezip.ir.network import Encoding, Layer, Network
from spikezip.ir.trace import Trace

__all__ = ["Encoding", "FormatError", "Layer", "Network", "Trace"]

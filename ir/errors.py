"""Errors raised by the network description and trace files."""


class FormatError(ValueError):
    """A file is not a valid spikezip network or trace (corrupt, wrong kind, wrong version)."""

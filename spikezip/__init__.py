"""The application layer: the ``spikezip`` CLI and the end-to-end demo.

It is the one place that drives software (``sw``), hardware (``hw``) and simulation (``sim``)
together; ``hw`` and ``sw`` never import each other.
"""

"""Pure-Python models of the hardware (event formats, exact cycle models).

No Amaranth import: the simulator process imports these.
"""

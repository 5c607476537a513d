"""cocotb testbenches: the code that runs inside the simulator process.

No torch and no Amaranth here; the parent process hands everything in as files.
"""

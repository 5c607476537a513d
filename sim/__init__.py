"""cocotb testbenches, the runner that builds and runs them on Verilator and Icarus, and checks."""

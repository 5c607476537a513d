"""The tool flow: Verilog generation, synthesis, place and route."""

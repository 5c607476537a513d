"""Hardware side: Amaranth generators built from the integer network description."""

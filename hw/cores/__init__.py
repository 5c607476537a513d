"""Amaranth components: the layer core and its blocks, the network core."""

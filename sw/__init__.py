"""Software side: quantizer, QANN training, conversion to the integer IR, bit-exact reference."""

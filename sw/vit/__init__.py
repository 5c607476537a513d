"""The spiking ViT: QAT model, conversion, exact reference, energy."""

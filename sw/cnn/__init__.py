"""The convolutional network: float QANN, conversion, integer reference, SOP/energy
(docs/cnn.md)."""

"""AtalaIA: compress face-recognition CNNs for microcontrollers, with measured accuracy, size and latency."""

__version__ = "0.1.0"

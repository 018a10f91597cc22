"""Compression building blocks: Hinton KD training (`distill`), magnitude and structured channel pruning
(`prune`). Quantization lives in `atalaia.deploy.tflite`; the tuner in `atalaia.tune`."""

__all__ = ["distill", "prune"]

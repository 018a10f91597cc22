"""Deployment building blocks: `.tflite` conversion and LiteRT runs (`tflite`), the TFLM check (`tflm`), MCU
targets and latency estimates (`targets`), C arrays (`carray`) and firmware projects (`firmware`)."""

__all__ = ["carray", "firmware", "targets", "tflite", "tflm"]

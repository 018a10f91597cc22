"""AtalaIA: compress face-recognition CNNs for microcontrollers, with measured accuracy, size and latency.

    import atalaia
    report = atalaia.run("recipes/default.yaml", out_dir="runs/default", **{"train.epochs": 10})
    print(report.stage("int8").arena_bytes)

The stage verbs are in `atalaia.api`; `run`, `distill`, `prune`, `quantize`, `verify_tflm`, `export`, `firmware` are
importable from here too (TensorFlow is imported only when one is used). `evaluate` is `atalaia.api.evaluate`:
`atalaia.evaluate` is the metrics package.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_VERBS = ("run", "distill", "prune", "quantize", "verify_tflm", "export", "firmware")


def __getattr__(name: str) -> Any:
    """`atalaia.run` & co. without importing TensorFlow at `import atalaia` (the CLI validates input first)."""
    if name in _VERBS:
        from atalaia import api

        return getattr(api, name)
    raise AttributeError(f"module 'atalaia' has no attribute '{name}'")


__all__ = ["__version__", *_VERBS]

"""The public Python verbs on a tiny model: prune really shrinks, quantize gives int8 bytes that TFLM runs,
evaluate measures them; `import atalaia` stays light (no TensorFlow until a verb is used)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest


def test_import_atalaia_does_not_import_tensorflow():
    code = "import sys, atalaia; print('tensorflow' in sys.modules, callable(atalaia.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_unknown_attribute_is_an_attribute_error():
    import atalaia

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        atalaia.nope  # noqa: B018


@pytest.mark.slow
def test_prune_quantize_verify_evaluate_on_a_tiny_model():
    import atalaia
    from atalaia.errors import AtalaiaError
    from atalaia.models import create_model

    rng = np.random.default_rng(0)
    model = create_model("ds_cnn", num_classes=3, input_shape=(16, 16, 1), width=0.5)
    pruned, summary = atalaia.prune(model, method="channel", ratio=0.5)
    assert summary["params_after"] < summary["params_before"] and pruned.count_params() < model.count_params()
    with pytest.raises(AtalaiaError, match="method must be"):
        atalaia.prune(model, method="random")
    x = rng.uniform(0, 1, (8, 16, 16, 1)).astype(np.float32)
    blob = atalaia.quantize(pruned, representative=x)
    report = atalaia.verify_tflm(blob)
    assert report.arena_bytes > 0
    images = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    from atalaia.api import evaluate

    row = evaluate(blob, images=images, labels=np.array([0, 1, 2, 0, 1, 2]), latency_runs=2)
    assert row.dtype == "int8" and row.flash_bytes == len(blob) and row.macs > 0 and 0 <= row.accuracy <= 1
    assert set(row.est_latency_ms) == {"esp32", "esp32s3"}

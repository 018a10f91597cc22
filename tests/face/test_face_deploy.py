"""int8 conversion of the embedding model, TFLM parity on it, and the int8 embeddings' quality."""

from __future__ import annotations

import numpy as np
import pytest

from atalaia.deploy.tflite import TFLiteRunner, convert_int8, op_names
from atalaia.deploy.tflm import check_tflm
from atalaia.face.data import load_chip_sets, representative_inputs
from atalaia.face.train import build_student, embed, train_embedding


@pytest.mark.slow
def test_int8_embedding_model_runs_in_tflm_bit_exact(face_data, fit_args):
    import keras

    cs = load_chip_sets([face_data["chipset"]], 32)
    keras.utils.set_random_seed(0)  # fixed initial weights: the parity fraction below is then the same every run
    m = build_student(32, width=0.25, embedding_dim=16)
    train_embedding(m, cs.images, cs.labels, cs.teacher, cs.num_classes,
                    **fit_args(epochs=2, batch_size=8, warmup_epochs=0.0))
    x = cs.images.astype(np.float32) / 255.0
    blob = convert_int8(m, representative_inputs(cs.images, 16))
    ops = set(op_names(blob))
    assert ops <= {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "RESHAPE", "AVERAGE_POOL_2D"}, ops
    runner = TFLiteRunner(blob)
    assert runner.input_dtype == np.int8 and runner.output_shape == (1, 16)
    # pixels/255 with scale 1/255 and zero point -128: the MCU feeds raw pixel - 128
    assert abs(runner.input_scale - 1 / 255) < 1e-6 and runner.input_zero_point == -128
    xq = runner.quantize_input(x)
    rep = check_tflm(blob, xq[:8])
    # TFLM reference kernels vs LiteRT builtin kernels: the global-average-pool MEAN may round a .5 differently
    # (see atalaia.deploy.tflm); everything else is bit-exact. Tolerance: 1 output quantization step.
    assert rep.parity_samples == 8 and rep.parity_max_abs_diff_steps <= 1
    assert rep.parity_exact_fraction >= 0.9
    assert 0 < rep.arena_bytes < 160 * 1024
    # int8 embeddings point the same way as the float ones
    f = embed(m, cs.images)
    q = runner.predict(x)
    cos = np.sum(f * q, 1) / (np.linalg.norm(f, axis=1) * np.linalg.norm(q, axis=1) + 1e-12)
    assert np.median(cos) > 0.85  # 2-epoch toy model; the real student measures ~0.99 (report.int8)

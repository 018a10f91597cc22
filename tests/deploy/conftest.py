"""Shared fixtures for the deploy tests: one tiny Keras model and its .tflite exports, built once per session.

The model is hand-computable (used for the exact MAC test):
    input 16x16x1
    Conv2D(4, 3x3, stride 2, valid)  -> 7x7x4   MACs 7*7*4*(3*3*1) = 1764
    DepthwiseConv2D(3x3, same)       -> 7x7x4   MACs 7*7*4*(3*3)   = 1764
    Flatten -> Dense(3)              -> 3       MACs 196*3         =  588
                                                total               4116
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CALIBRATION_DIR = Path(os.environ.get("ATALAIA_CALIBRATION_DIR", "/work/shared/calibration"))
TINY_MACS = {"CONV_2D": 1764, "DEPTHWISE_CONV_2D": 1764, "FULLY_CONNECTED": 588}


def build_tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input(shape=(16, 16, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="valid", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(3)(x)
    return keras.Model(inp, out, name="tiny")


@pytest.fixture(scope="session")
def tiny_model():
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_images() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, size=(32, 16, 16, 1)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_float_blob(tiny_model) -> bytes:
    from atalaia.deploy.tflite import convert_float

    return convert_float(tiny_model)


@pytest.fixture(scope="session")
def tiny_int8_blob(tiny_model, tiny_images) -> bytes:
    from atalaia.deploy.tflite import convert_int8

    return convert_int8(tiny_model, tiny_images)


@pytest.fixture(scope="session")
def tiny_macs() -> dict[str, int]:
    return dict(TINY_MACS)


@pytest.fixture(scope="session")
def calibration_blob():
    """Loader of a calibration model by file name; skips the test if the calibration dir is absent.

    (A fixture, not an importable helper: other conftest.py files in tests/ make `import conftest` ambiguous.)
    """

    def load(filename: str) -> bytes:
        path = CALIBRATION_DIR / filename
        if not path.is_file():
            pytest.skip(f"calibration model {path} not present (set ATALAIA_CALIBRATION_DIR)")
        return path.read_bytes()

    return load


@pytest.fixture(scope="session")
def cc() -> str:
    """The host C compiler: skips the test without one, fails it when ATALAIA_REQUIRE_CC is set (CI)."""
    import shutil

    found = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if found is None:
        if os.environ.get("ATALAIA_REQUIRE_CC"):
            pytest.fail("no C compiler on PATH (ATALAIA_REQUIRE_CC is set)")
        pytest.skip("no C compiler on PATH")
    return found


def _c_array(name: str, a, ctype: str) -> str:
    values = np.ravel(np.asarray(a))
    text = (f"{float(v)!r}f" for v in values) if ctype == "float" else (str(int(v)) for v in values)
    return f"static const {ctype} {name}[{values.size}] = {{{', '.join(text)}}};\n"


@pytest.fixture(scope="session")
def c_array():
    """`c_array(name, array, ctype)` -> a `static const` C array definition (ctype "float" writes float
    literals, any other ctype integers): how the C tests hand Python's inputs to the C modules."""
    return _c_array

import re

import numpy as np
import pytest

from atalaia.deploy.firmware import resolver_method, write_esp_idf_project
from atalaia.errors import DeployError


@pytest.mark.parametrize("op,method", [
    ("CONV_2D", "AddConv2D"), ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"), ("FULLY_CONNECTED", "AddFullyConnected"),
    ("AVERAGE_POOL_2D", "AddAveragePool2D"), ("L2_NORMALIZATION", "AddL2Normalization"), ("MEAN", "AddMean"),
    ("RESHAPE", "AddReshape"), ("MAX_POOL_2D", "AddMaxPool2D"),
])
def test_resolver_method_names(op, method):
    assert resolver_method(op) == method


def test_custom_op_rejected():
    with pytest.raises(DeployError, match="custom op"):
        resolver_method("CUSTOM:TFLite_Detection_PostProcess")


def test_project_files(tmp_path):
    blob = bytes(range(256)) * 3
    files = write_esp_idf_project(blob, tmp_path, ops=["CONV_2D", "MEAN", "CONV_2D", "FULLY_CONNECTED"],
                                  arena_bytes=10_000, sample_input_q=np.arange(-8, 8, dtype=np.int8),
                                  expected_output_q=np.array([5, -3], np.int8))
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"CMakeLists.txt", "main/main.cc", "main/model_data.cc", "main/self_test.h", "main/atalaia_core.cc",
            "main/idf_component.yml"} <= names
    assert "app_main" in (tmp_path / "main" / "main.cc").read_text()  # the ESP-IDF shim
    assert '"atalaia_core.cc"' in (tmp_path / "main" / "CMakeLists.txt").read_text()
    main = (tmp_path / "main" / "atalaia_core.cc").read_text()  # the core shared with Cortex-M
    assert '#include "model_data.h"' in main
    assert '#include "model_data.h"' in (tmp_path / "main" / "model_data.cc").read_text()
    assert "MicroMutableOpResolver<3>" in main  # unique ops only
    assert main.count("resolver.AddConv2D()") == 1 and "resolver.AddMean()" in main
    arena = int(re.search(r"define ATALAIA_ARENA_BYTES (\d+)", main).group(1))
    assert arena >= 10_000 and arena % 16 == 0
    st = (tmp_path / "main" / "self_test.h").read_text()
    assert "kTestInputLen = 16" in st and "kTestCount = 1;" in st and "5,-3" in st

"""Cortex-M project generation without a toolchain: which TFLM sources a model needs, the project files, the
linker-map size split, parts and the instruction-based latency estimate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atalaia.deploy.cortex_m import CORE_SOURCES, resolve_sources, validate_tflm_root, write_cortex_m_project
from atalaia.deploy.emulate import map_split, parse_firmware_output
from atalaia.deploy.selftest import derive_inputs
from atalaia.deploy.targets import (
    CALIBRATION,
    PARTS,
    TARGETS,
    cycles_per_instruction,
    estimate_ms_from_instructions,
    get_part,
    instruction_calibration,
)
from atalaia.errors import AtalaiaError, DeployError


@pytest.fixture(scope="module")
def tflm_root(shared_dir):
    root = shared_dir / "vendor" / "tflm"
    if not root.is_dir():
        pytest.skip(f"no vendored TFLM tree at {root}")
    return root


def test_sources_are_the_models_kernels_only(tflm_root):
    s = resolve_sources(tflm_root, ["CONV_2D", "FULLY_CONNECTED", "CONV_2D", "RESHAPE"])
    k = s.kernels["cmsis_nn"]
    assert "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" in k  # the CMSIS-NN override
    assert "tensorflow/lite/micro/kernels/conv_common.cc" in k  # its helper
    assert "tensorflow/lite/micro/kernels/reshape.cc" in k  # no CMSIS-NN version: the reference one
    assert not any("depthwise" in f or "softmax" in f or "pooling" in f for f in k)
    assert "tensorflow/lite/micro/kernels/conv.cc" in s.kernels["reference"]
    assert any(f.endswith("/arm_convolve_s8.c") for f in s.cmsis_nn_c)
    assert not any("Softmax" in f or "Pooling" in f for f in s.cmsis_nn_c)
    assert all((tflm_root / f).is_file() for f in (*CORE_SOURCES, *k, *s.cmsis_nn_c))
    # a different kernel set is a different cached archive
    assert s.kernel_set_tag("cmsis_nn") != resolve_sources(tflm_root, ["CONV_2D"]).kernel_set_tag("cmsis_nn")


def test_bad_tree_and_op_are_clear(tmp_path, tflm_root):
    with pytest.raises(DeployError, match="--tflm-root"):
        validate_tflm_root(None)
    with pytest.raises(DeployError, match="not a TFLM tree"):
        validate_tflm_root(tmp_path)
    with pytest.raises(DeployError, match="AddNoSuchOp"):
        resolve_sources(tflm_root, ["NO_SUCH_OP"])


def test_project_files(tmp_path, tflm_root):
    x = derive_inputs(np.arange(-8, 8, dtype=np.int8).reshape(1, 4, 4, 1), 8)
    assert x.shape == (8, 4, 4, 1) and len({xi.tobytes() for xi in x}) == 8  # 8 different inputs
    files = write_cortex_m_project(bytes(range(64)), tmp_path, cpu="cortex-m4", tflm_root=tflm_root,
                                   ops=["CONV_2D", "FULLY_CONNECTED"], arena_bytes=5000, test_inputs_q=x,
                                   test_outputs_q=np.zeros((8, 3), np.int8))
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"Makefile", "src/main.cc", "src/atalaia_core.cc", "src/self_test.h", "src/model_data.cc",
            "port/startup_cm.c", "port/mps2_an386.ld", "port/qemu_insncount.c"} <= names
    mk = (tmp_path / "Makefile").read_text()
    assert "kernels/cmsis_nn/conv.cc" in mk and "depthwise_conv" not in mk
    assert "ARENA_BYTES ?= 6032" in mk  # 5000 + 1024 margin, rounded to 16
    core = (tmp_path / "src" / "atalaia_core.cc").read_text()
    assert "MicroMutableOpResolver<2>" in core and "bench_marker_start();" in core
    assert "kTestCount = 8;" in (tmp_path / "src" / "self_test.h").read_text()
    assert "alignas(16) const unsigned char g_model[]" in (tmp_path / "src" / "model_data.cc").read_text()


def test_map_split_attributes_sections(tmp_path):
    mp = tmp_path / "fw.map"
    mp.write_text(
        "Linker script and memory map\n\n"
        ".text           0x00000000     0x1000\n"
        " .text.main     0x00000000       0x40 build/app/main.o\n"
        " .text._ZN6tflite16MicroInterpreter6InvokeEv\n"
        "                0x00000040      0x200 /c/libtflm_abc.a(micro_interpreter.o)\n"
        " .text.printf   0x00000240       0x80 /usr/lib/arm-none-eabi/lib/thumb/libc_nano.a(lib_a-printf.o)\n"
        " *fill*         0x000002c0        0x4 \n"
        ".rodata         0x00001000      0x900\n"
        " .rodata.g_model\n                0x00001000      0x800 build/app/model_data.o\n"
        " .rodata._ZL19atalaia_test_inputs\n                0x00001800      0x100 build/app/atalaia_core_1.o\n"
        ".bss            0x20000000      0x500\n"
        " .bss.atalaia_tensor_arena\n                0x20000000      0x4f0 build/app/atalaia_core_1.o\n")
    split = map_split(mp, "g_model")
    assert split[".text"] == {"app": 0x40, "tflm": 0x200, "libc": 0x80}
    assert split[".rodata"] == {"model": 0x800, "self_test": 0x100}
    assert split[".bss"] == {"arena": 0x4f0}


def test_parse_firmware_output():
    out = parse_firmware_output(
        "ATALAIA arena_used 1556 arena_size 3344\n"
        "ATALAIA selftest 0 max_diff 0 same 3/3 top1 1 ticks 0 cycles\n"
        "ATALAIA selftest 1 max_diff 2 same 2/3 top1 0 ticks 0 cycles\n"
        "ATALAIA face probe 0 person 1 score_e6 912345 threshold_e6 -50 granted 1 ticks 0 cycles\n"
        "ATALAIA result FAIL\n")
    assert out["arena_used_bytes"] == 1556 and out["bit_exact_samples"] == 1 and out["max_diff_steps"] == 2
    assert out["face_probes"][0] == {"probe": 0, "person": 1, "score": 0.912345, "threshold": -5e-05,
                                     "granted": True}
    assert out["result"] == "FAIL"


def test_parts_and_instruction_estimate():
    assert get_part("STM32F446RE").sram_bytes == 128 * 1024
    assert {p.cpu for p in PARTS.values()} >= {"cortex-m4", "cortex-m7"}
    with pytest.raises(AtalaiaError, match="valid parts"):
        get_part("stm32f999")
    cpi = cycles_per_instruction("cortex-m4")
    assert 1.0 < cpi < 6.0  # a Cortex-M4 retires at most one instruction per cycle
    assert cycles_per_instruction("cortex-m55") is None  # no anchor, no estimate
    assert estimate_ms_from_instructions(10**6, "cortex-m55") is None
    # instructions x CPI / clock; a faster clock is proportionally faster
    assert estimate_ms_from_instructions(12 * 10**6, "cortex-m4") == pytest.approx(12e6 * cpi / 120e3)
    assert estimate_ms_from_instructions(10**6, "cortex-m4", 240) == pytest.approx(
        estimate_ms_from_instructions(10**6, "cortex-m4") / 2)
    cal = instruction_calibration()
    assert {c["model"] for c in cal} == {a["model"] for a in CALIBRATION if a["target"] == "cortex-m4"}
    for c in cal:  # out of sample, the instruction model beats the MAC-rate model on both anchors
        assert abs(c["loo_rel_error"]) < abs(c["mac_rate_loo_rel_error"])
        assert c["clock_mhz"] == TARGETS["cortex-m4"].clock_mhz


def _sealed_int8_run(run: Path, blob: bytes) -> Path:
    """A finished int8 stage with what export reads, sealed with checksums as the engine seals one."""
    import json

    from atalaia.pipeline.runfolder import write_marker

    st = run / "int8"
    st.mkdir(parents=True)
    (st / "model.tflite").write_bytes(blob)
    np.savez(st / "self_test.npz", input_q=np.zeros((1, 16, 16, 1), np.int8), output_q=np.zeros((1, 3), np.int8))
    (st / "metrics.json").write_text(json.dumps({"result": {"arena_bytes": 2000}}))
    write_marker(st, "test")
    return st


def test_export_is_atomic_and_keeps_other_targets(tmp_path, tflm_root, tiny_int8_blob, monkeypatch):
    from atalaia.api import export
    from atalaia.deploy import mcu

    _sealed_int8_run(tmp_path / "run", tiny_int8_blob)
    out = tmp_path / "exp"
    export(tmp_path / "run", out=out, target="cortex-m4", tflm_root=tflm_root)
    export(tmp_path / "run", out=out, target="esp32s3")
    assert (out / "cortex-m-m4" / "Makefile").is_file() and (out / "esp-idf-esp32s3" / "main" / "main.cc").is_file()
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def boom(*a, **k):
        raise RuntimeError("killed half-way")

    monkeypatch.setattr(mcu, "write_cortex_m_project", boom)
    with pytest.raises(RuntimeError):
        export(tmp_path / "run", out=out, target="cortex-m7", tflm_root=tflm_root)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # the old export is untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    with pytest.raises(AtalaiaError, match="valid targets"):
        export(tmp_path / "run", out=out, target="esp99")


def test_firmware_cli_user_errors(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "atalaia.cli", *args], capture_output=True, text=True)

    p = cli("firmware", str(tmp_path), "--part", "stm32f999")
    assert p.returncode == 2 and "valid parts" in p.stderr and "Traceback" not in p.stderr
    p = cli("firmware", str(tmp_path), "--target", "cortex-m4")
    assert p.returncode == 2 and "no finished int8 stage" in p.stderr
    p = cli("export", str(tmp_path), "--target", "cortex-m4", "--tflm-root", str(tmp_path))
    assert p.returncode == 2 and "not a TFLM tree" in p.stderr


def test_export_refuses_a_damaged_model(tmp_path, tiny_int8_blob):
    """A finished stage whose model.tflite was truncated after the fact: one clear error, nothing written."""
    from atalaia.api import export

    st = _sealed_int8_run(tmp_path / "run", tiny_int8_blob)
    (st / "model.tflite").write_bytes(tiny_int8_blob[:100])
    with pytest.raises(AtalaiaError, match="model.tflite has 100 bytes"):
        export(tmp_path / "run", out=tmp_path / "exp", target="esp32s3")
    assert not (tmp_path / "exp").exists()

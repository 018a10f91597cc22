"""End to end on an emulated Cortex-M4: `atalaia export --target cortex-m4` + `atalaia firmware --emulate`
build a small int8 model with arm-none-eabi-gcc (CMSIS-NN, only the kernels it uses) and run it in QEMU:
bit-exact on 8 self-test inputs, linked sizes parsed, instructions counted; a part too small fails the link;
a face model's access decisions on the emulated MCU equal the host's (mirror TTA off and on).

Needs Debian's gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib, qemu-system-arm
and ../shared/vendor/tflm. Skipped without the toolchain unless ATALAIA_REQUIRE_ARM is set (CI sets it).
The compiled TFLM objects are cached in ~/.cache/atalaia/tflm (cold: a few minutes on 2 cores)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from atalaia.api import firmware as firmware_for_run
from atalaia.deploy.emulate import TOOLS, build_firmware
from atalaia.deploy.targets import McuPart
from atalaia.deploy.tflm import check_tflm
from atalaia.errors import DeployError
from atalaia.pipeline.runfolder import write_marker


@pytest.fixture(scope="module")
def arm(shared_dir) -> Path:
    """The vendored TFLM tree, once the ARM toolchain and QEMU are known to be there."""
    missing = [t for t in (*TOOLS, "qemu-system-arm", "gcc") if shutil.which(t) is None]
    root = shared_dir / "vendor" / "tflm"
    if not root.is_dir():
        missing.append(str(root))
    if missing:
        if os.environ.get("ATALAIA_REQUIRE_ARM"):
            pytest.fail(f"ATALAIA_REQUIRE_ARM is set but {', '.join(missing)} missing")
        pytest.skip(f"ARM toolchain / QEMU / TFLM tree missing: {', '.join(missing)}")
    return root


def _run_folder(path: Path, blob: bytes, x1: np.ndarray, stage: str = "int8", face: dict | None = None) -> Path:
    d = path / stage
    d.mkdir(parents=True)
    (d / "model.tflite").write_bytes(blob)
    np.savez(d / "self_test.npz", input_q=x1, output_q=np.zeros(1, np.int8))
    (d / "metrics.json").write_text(json.dumps({"result": {"arena_bytes": check_tflm(blob).arena_bytes}}))
    if face:
        (d / "face_model.json").write_text(json.dumps(face))
    write_marker(d, "test")
    return path


def _atalaia(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atalaia.cli", *args], capture_output=True, text=True)


def test_firmware_builds_and_is_bit_exact_in_qemu(arm, tiny_int8_blob, tiny_images, tmp_path):
    from atalaia.deploy.tflite import TFLiteRunner

    run = _run_folder(tmp_path / "run", tiny_int8_blob, TFLiteRunner(tiny_int8_blob).quantize_input(tiny_images[:1]))
    p = _atalaia("export", str(run), "--target", "cortex-m4", "--tflm-root", str(arm))
    assert p.returncode == 0, p.stderr
    proj = run / "export" / "cortex-m-m4"
    assert (proj / "Makefile").is_file() and (run / "export" / "model_data.cc").is_file()
    assert not [q for q in (run).iterdir() if q.name.startswith(".export")]  # no temp folder left behind

    p = _atalaia("firmware", str(run), "--target", "cortex-m4", "--emulate", "--tflm-root", str(arm),
                 "--part", "stm32f446re")
    assert p.returncode == 0, p.stderr + p.stdout
    rec = json.loads((run / "firmware" / "cortex-m4" / "firmware.json").read_text())
    assert rec["emulated"] and rec["qemu"]["machine"] == "mps2-an386"
    st = rec["self_test"]
    assert st["n"] == 8 and st["samples"] == 8 and st["bit_exact"] and st["max_diff_steps"] == 0
    s = rec["sizes"]
    assert s["split"]["model"] >= len(tiny_int8_blob)  # the model array is linked in flash
    assert s["split"]["arena"] == rec["arena"]["linked_bytes"]
    assert s["split"]["tflm"] > 20_000 and s["split"]["libc"] > 0  # TFLM + CMSIS-NN code is really there
    assert s["flash_bytes"] == sum(s["sections"].get(k, 0) for k in (".text", ".rodata", ".ARM.exidx",
                                                                     ".init_array", ".data"))
    assert s["flash_bytes"] <= 512 * 1024 and s["ram_bytes"] <= 128 * 1024  # linked for the part
    ins = rec["instructions"]
    assert ins["per_invoke"] > 4116  # more instructions than the model's 4,116 MACs
    assert ins["invokes_counted"] == 8 and ins["min"] == ins["max"]  # int8 kernels: data-independent
    lat = rec["latency_est"]
    assert lat["from_instructions_ms"] > 0 and lat["clock_mhz"] == 180
    assert 0 < rec["arena"]["used_on_target_bytes"] <= rec["arena"]["linked_bytes"]
    assert "bit-exact yes" in p.stdout and "est." in p.stdout

    # the same build against a part too small: the link fails and says by how much
    proj = run / "firmware" / "cortex-m4" / "project"
    tiny_part = McuPart("tiny-part", "cortex-m4", 48, 64 * 1024, 16 * 1024)
    with pytest.raises(DeployError, match=r"does not fit tiny-part .* needs \d+ B flash"):
        build_firmware(proj, tflm_root=arm, cpu="cortex-m4", part=tiny_part)


@pytest.mark.parametrize("mirror", [False, True])
def test_face_firmware_decisions_equal_host(arm, face_blob, tmp_path, mirror):
    blob, facts = face_blob
    facts = {**facts, "mirror_tta": mirror}
    x1 = np.random.default_rng(1).integers(-128, 128, (1, 32, 32, 1)).astype(np.int8)
    run = _run_folder(tmp_path / "run", blob, x1, stage="int8_litert", face=facts)
    rec, _ = firmware_for_run(run, target="cortex-m4", tflm_root=arm)
    f = rec["face"]
    assert f["mirror_tta"] is mirror and f["probes"] == 8 and len(f["device"]) == 8
    assert f["decisions_equal_host"], (f["device"], f["host"])
    assert f["device"][0]["person"] == 0 and f["device"][0]["score"] == pytest.approx(1.0, abs=1e-4)  # enrolled
    assert rec["self_test"]["bit_exact"]


@pytest.fixture(scope="module")
def face_blob():
    """A tiny face student (32x32 grey -> 16-d) as int8 and a face_model.json for it."""
    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.train import build_student

    m = build_student(32, width=0.25, embedding_dim=16)
    rep = np.random.default_rng(0).uniform(0, 1, (16, 32, 32, 1)).astype(np.float32)
    blob = convert_int8(m, rep)
    r = TFLiteRunner(blob)
    facts = {"chip": "test", "grey": True, "crop": 1.0, "input_size": 32, "embedding_dim": 16,
             "input_scale": r.input_scale, "input_zero_point": r.input_zero_point, "output_scale": r.output_scale,
             "output_zero_point": r.output_zero_point, "threshold_lfw_accuracy": 0.5, "threshold_far_1e-3": 0.9,
             "threshold_far_1e-2": 0.7,
             "impostor_tail": {"pairs": 10**6, "thresholds": {"0.01": 0.6, "0.001": 0.8, "0.0001": 0.95}}}
    return blob, facts


@pytest.mark.slow  # the session's tiny detector + recogniser; the build reuses the cached TFLM objects
def test_frame_firmware_runs_both_models_in_one_arena(arm, frame_models, tmp_path):
    """`firmware --detector`: the emulated Cortex-M4 runs frame -> detector -> alignment -> recogniser ->
    decision with both models re-created in turn in ONE linked arena, and decides like the host (TFLM runtime,
    the Python frame path)."""
    import shutil

    run = tmp_path / "face_run"
    shutil.copytree(frame_models["face_run"], run)
    rec, _ = firmware_for_run(run, target="cortex-m4", tflm_root=arm, emulate=True, detector=frame_models["det_run"])
    fr, fa = rec["frame"], rec["frame"]["arena"]
    assert fa["shared_bytes"] == rec["arena"]["linked_bytes"]
    assert 0 < fa["detector_used_bytes"] <= fa["shared_bytes"] and 0 < fa["recogniser_used_bytes"] <= fa["shared_bytes"]
    assert fr["frames"] == 2 and fr["decisions_equal_host"], (fr["device"], fr["host"])
    assert fr["device"][0]["granted"] and fr["device"][0]["faces"] >= 1  # the enrolled frame opens the door

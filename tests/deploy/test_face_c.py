"""The on-device access-control C module (deploy/face_c), compiled with the host C compiler: its embeddings,
thresholds and decisions must equal the Python ones (`mirror_fuse`, `open_set_threshold`, the 1-NN rule of
`atalaia access`). CI sets ATALAIA_REQUIRE_CC=1, so a missing compiler fails there instead of skipping."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from atalaia.deploy.carray import face_header
from atalaia.deploy.firmware import FACE_C_DIR, FACE_C_FILES, write_esp_idf_project
from atalaia.evaluate.verification import mirror_fuse, open_set_threshold

DIM, SIZE = 16, 6
TAIL = {"0.01": 0.42, "0.001": 0.55, "0.0001": 0.66, "1e-05": 0.74}


def _facts(mirror: bool) -> dict:
    return {"chip": "test", "crop": 0.7, "input_size": SIZE, "embedding_dim": DIM, "input_scale": 1 / 255,
            "input_zero_point": -128, "output_scale": 0.03, "output_zero_point": 3,
            "threshold_lfw_accuracy": 0.3, "threshold_far_1e-3": 0.55, "threshold_far_1e-2": 0.42,
            "mirror_tta": mirror, "impostor_tail": {"pairs": 10**7, "thresholds": TAIL}}


def _build_and_run(cc: str, tmp_path, facts: dict, body: str, arrays: str) -> list[str]:
    (tmp_path / "face_model.h").write_text(face_header(facts))
    for name in FACE_C_FILES:
        shutil.copy(FACE_C_DIR / name, tmp_path / name)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "atalaia_face.h"\n' + arrays + "int main(void) {\n" + body + "return 0;\n}\n")
    exe = tmp_path / "face_test"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    str(tmp_path / "atalaia_face.c"), str(tmp_path / "main.c"), "-o", str(exe), "-lm"],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


@pytest.mark.parametrize("mirror", [False, True])
def test_c_decisions_equal_python(tmp_path, mirror, cc, c_array):
    rng = np.random.default_rng(3)
    n_enrol, n_probe = 12, 40
    people = np.repeat(np.arange(4), 3)  # 4 people x 3 templates
    # probes near an enrolled template (residents) or random (strangers), as raw int8 model outputs
    base = rng.integers(-60, 60, (n_enrol, DIM))
    near = base[rng.integers(0, n_enrol, n_probe // 2)] + rng.integers(-25, 25, (n_probe // 2, DIM))
    raw = np.clip(np.concatenate([base, near, rng.integers(-60, 60, (n_probe // 2, DIM))]), -128, 127)
    raw_m = np.clip(raw + rng.integers(-20, 20, raw.shape), -128, 127).astype(np.int8)
    raw = raw.astype(np.int8)

    deq = lambda q: (q.astype(np.float64) - 3) * 0.03  # noqa: E731
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    emb = mirror_fuse(deq(raw), deq(raw_m)).astype(np.float64) if mirror else unit(deq(raw))
    gallery, probes = emb[:n_enrol], emb[n_enrol:]
    th, _ = open_set_threshold({"thresholds": TAIL}, n_enrol, 0.01)
    sims = probes @ gallery.T

    body = f"""
  static atalaia_gallery_t g;
  float e[{DIM}];
  atalaia_gallery_init(&g);
  for (int i = 0; i < {n_enrol}; ++i) {{
    atalaia_face_embedding(raw + i * {DIM}, raw_m + i * {DIM}, e);
    atalaia_gallery_enrol(&g, person[i], e);
  }}
  for (int i = {n_enrol}; i < {n_enrol + n_probe}; ++i) {{
    atalaia_face_embedding(raw + i * {DIM}, raw_m + i * {DIM}, e);
    atalaia_decision_t d = atalaia_face_decide(&g, e, -2.0f);
    printf("%d %.7f %.7f %d\\n", d.person, (double)d.score, (double)d.threshold, d.granted);
  }}
  int removed = atalaia_gallery_remove(&g, 2);
  printf("removed %d left %d\\n", removed, g.count);
"""
    arrays = (c_array("raw", raw, "int8_t") + c_array("raw_m", raw_m, "int8_t")
              + c_array("person", people, "int16_t"))
    out = _build_and_run(cc, tmp_path, _facts(mirror), body, arrays)
    assert out[-1] == "removed 3 left 9"
    granted_any = refused_any = False
    for line, s in zip(out[:-1], sims, strict=True):
        person, score, c_th, granted = line.split()
        assert float(c_th) == pytest.approx(th, abs=1e-6)
        assert float(score) == pytest.approx(float(s.max()), abs=1e-5)
        top2 = np.sort(s)[-2:]
        if top2[1] - top2[0] > 1e-4:  # a clear nearest template: the same person
            assert int(person) == int(people[int(s.argmax())])
        if abs(s.max() - th) > 1e-4:
            assert bool(int(granted)) == bool(s.max() >= th)
        granted_any |= bool(int(granted))
        refused_any |= not bool(int(granted))
    assert granted_any and refused_any  # both outcomes were exercised


def test_c_threshold_follows_the_gallery_size_and_mirror_input(tmp_path, cc):
    counts = [1, 2, 5, 25, 200, 5000]
    body = "".join(f'  printf("%.7f\\n", (double)atalaia_face_open_set_threshold({t}, 0.01f));\n' for t in counts)
    body += f"""
  int8_t x[{SIZE * SIZE}], y[{SIZE * SIZE}];
  for (int i = 0; i < {SIZE * SIZE}; ++i) x[i] = (int8_t)i;
  atalaia_face_mirror_input(x, y);
  printf("%d %d %d\\n", y[0], y[{SIZE - 1}], y[{SIZE}]);
"""
    out = _build_and_run(cc, tmp_path, _facts(False), body, "")
    for t, line in zip(counts, out[:-1], strict=True):
        assert float(line) == pytest.approx(open_set_threshold({"thresholds": TAIL}, t, 0.01)[0], abs=1e-6)
    img = np.arange(SIZE * SIZE).reshape(SIZE, SIZE)[:, ::-1].reshape(-1)
    assert out[-1] == f"{img[0]} {img[SIZE - 1]} {img[SIZE]}"


def test_face_firmware_project_includes_the_module(tmp_path):
    files = write_esp_idf_project(bytes(64), tmp_path, ops=["CONV_2D"], arena_bytes=1000,
                                  sample_input_q=np.zeros(SIZE * SIZE, np.int8),
                                  expected_output_q=np.zeros(DIM, np.int8), face_facts=_facts(True))
    names = {p.relative_to(tmp_path).as_posix() for p in files}
    assert {"main/atalaia_face.c", "main/atalaia_face.h", "main/face_model.h"} <= names
    assert '"atalaia_face.c"' in (tmp_path / "main" / "CMakeLists.txt").read_text()
    main = (tmp_path / "main" / "atalaia_core.cc").read_text()
    assert '#include "atalaia_face.h"' in main and "atalaia_face_decide(&gallery" in main
    assert "kFaceEnrolCount = 1;" in (tmp_path / "main" / "face_test.h").read_text()
    assert "#define ATALAIA_FACE_MIRROR_TTA 1" in (tmp_path / "main" / "face_model.h").read_text()
    plain = write_esp_idf_project(bytes(64), tmp_path / "p", ops=["CONV_2D"], arena_bytes=1000,
                                  sample_input_q=np.zeros(4, np.int8), expected_output_q=np.zeros(2, np.int8))
    assert not any("atalaia_face" in p.name for p in plain)
    assert "atalaia_face" not in (tmp_path / "p" / "main" / "atalaia_core.cc").read_text()

"""The device's frame -> decision path (deploy/face_c/atalaia_face_frame.{h,c}) compiled with the host C compiler,
against the Python path of `atalaia access check --detector` on the fixture frames.

The models are not run in C here (no TFLM on the host compiler): the C module's model callbacks print the input
tensor the C code wrote and hand back the int8 outputs the Python path got from LiteRT. So, given the same
detector outputs: the same detector input (letterbox + quantization), the same detections, the same face, the
same recogniser input (chip within one grey level), and - given the same recogniser outputs - the same embedding
and the same decision against the same gallery. CI sets ATALAIA_REQUIRE_CC=1 (a missing compiler fails)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from atalaia.data.dataset import mirrored, to_float
from atalaia.data.frames import load_frames
from atalaia.deploy.carray import detector_header, face_header
from atalaia.deploy.tflite import TFLiteRunner
from atalaia.face.access import AccessControl, load_detector
from atalaia.face.frame import letterbox_frame

C_DIR = Path(__file__).resolve().parents[2] / "src" / "atalaia" / "deploy" / "face_c"
FRAMES = Path(__file__).resolve().parents[1] / "fixtures" / "frames"
C_FILES = ("atalaia_face.h", "atalaia_face.c", "atalaia_face_detect.h", "atalaia_face_detect.c",
           "atalaia_face_frame.h", "atalaia_face_frame.c")


@pytest.mark.slow  # the session's tiny models take ~20 s of CPU to build; the test itself ~2 s
def test_c_frame_path_equals_python(frame_models, tmp_path, cc, c_array):
    det = load_detector(frame_models["det_run"])
    ac = AccessControl(frame_models["face_run"], state_dir=tmp_path / "s", detector=det, threshold=0.85)
    fs = load_frames(FRAMES)
    rec = TFLiteRunner(frame_models["rec_blob"])
    size, crop = int(ac.facts["input_size"]), float(ac.facts["crop"])
    # the gallery: frames 0 and 2 enrolled through the frame path (two people)
    for k, name in ((0, "ann"), (2, "bob")):
        ac.enrol(name, [FRAMES / "images" / fs.names[k]])
    names, mat = ac.store.gallery()
    cases, body = [], ""
    for f, img in enumerate(fs.images):
        x, _ = letterbox_frame(img, det.input_hw)
        xq = det.input_q(x)
        out_q = det.raw(xq)
        face = det.face(img, size, crop)
        py = {"xq": xq.reshape(-1), "faces": 0}
        rq = np.zeros((2, 16), np.int8)
        if face is not None:
            chip_q = rec.quantize_input(to_float(face.chip[None, ..., None]))
            rq = np.stack([rec.predict_raw(chip_q)[0], rec.predict_raw(mirrored(chip_q))[0]])
            d = ac.check(FRAMES / "images" / fs.names[f])
            py.update(faces=face.faces, box=np.array(face.box), chip_q=chip_q.reshape(-1), decision=d)
        cases.append(py)
        body += f"""  {{ static const uint8_t frame[] = {{{', '.join(str(int(v)) for v in img.ravel())}}};
{c_array("dout", out_q, "int8_t")}{c_array("rout", rq, "int8_t")}    det_out = dout; rec_out = rout; rec_calls = 0;
    atalaia_frame_result_t r;
    int st = atalaia_face_frame_decide(frame, {img.shape[1]}, {img.shape[0]}, &models, &g, threshold, &r);
    printf("result %d %d %.9f %.9f %.9f %.9f %.12f %d %.7f %d\\n", st, r.faces, r.face.box[0], r.face.box[1],
           r.face.box[2], r.face.box[3], r.face.score, r.decision.person, r.decision.score, r.decision.granted); }}
"""
    person = {n: i for i, n in enumerate(sorted(set(names)))}
    main = f"""#include <stdio.h>
#include <string.h>
#include "atalaia_face_frame.h"
static int8_t det_in[{det.input_hw[0] * det.input_hw[1]}], rec_in[{size * size}];
static const int8_t *det_out, *rec_out;
static int rec_calls;
static int8_t* input(void* u, int model) {{ (void)u; return model == ATALAIA_MODEL_DETECTOR ? det_in : rec_in; }}
static void dump(const char* tag, const int8_t* t, int n) {{
  printf("%s", tag);
  for (int i = 0; i < n; ++i) printf(" %d", t[i]);
  printf("\\n");
}}
static const int8_t* invoke(void* u, int model) {{  /* then scribble on the input, as TFLM may reuse it */
  (void)u;
  if (model == ATALAIA_MODEL_DETECTOR) {{
    dump("det_in", det_in, (int)sizeof(det_in));
    memset(det_in, 0x55, sizeof(det_in));
    return det_out;
  }}
  dump(rec_calls == 0 ? "rec_in" : "rec_mirror_in", rec_in, (int)sizeof(rec_in));
  memset(rec_in, 0x55, sizeof(rec_in));
  return rec_out + {16} * rec_calls++;
}}
{c_array("templates", mat, "float")}static const int16_t who[{len(names)}] = {{{', '.join(str(person[n]) for n in names)}}};
int main(void) {{
  atalaia_models_t models = {{input, invoke, 0}};
  static atalaia_gallery_t g;
  atalaia_gallery_init(&g);
  for (int i = 0; i < {len(names)}; ++i) atalaia_gallery_enrol(&g, who[i], templates + i * {mat.shape[1]});
  const float threshold = {ac.threshold!r}f;
{body}  return 0;
}}
"""
    for name in C_FILES:
        shutil.copy(C_DIR / name, tmp_path / name)
    (tmp_path / "face_model.h").write_text(face_header(ac.facts))
    (tmp_path / "detector_model.h").write_text(detector_header(det.facts()))
    (tmp_path / "main.c").write_text(main)
    exe = tmp_path / "frame_test"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    *[str(tmp_path / n) for n in C_FILES if n.endswith(".c")], str(tmp_path / "main.c"),
                    "-o", str(exe), "-lm"], check=True, capture_output=True, text=True)
    lines = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    at, decided, no_face = 0, 0, 0
    for py in cases:
        got_xq = np.array(lines[at].split()[1:], int)
        assert lines[at].startswith("det_in") and np.abs(got_xq - py["xq"]).max() <= 1
        assert np.mean(got_xq == py["xq"]) > 0.99  # the same detector input
        at += 1
        if py["faces"]:
            chip = np.array(lines[at].split()[1:], int)
            assert lines[at].startswith("rec_in") and np.abs(chip - py["chip_q"]).max() <= 1  # the same chip
            mirror = np.array(lines[at + 1].split()[1:], int)
            want = py["chip_q"].reshape(size, size)[:, ::-1].reshape(-1)  # the mirrored pass sees the chip again
            assert lines[at + 1].startswith("rec_mirror_in") and np.abs(mirror - want).max() <= 1
            at += 2
        assert lines[at].startswith("result")
        r = lines[at].split()[1:]
        at += 1
        assert int(r[1]) == py["faces"]
        if not py["faces"]:
            assert int(r[0]) == 1  # ATALAIA_FRAME_NO_FACE
            no_face += 1
            continue
        assert int(r[0]) == 0
        np.testing.assert_allclose([float(v) for v in r[2:6]], py["box"], atol=1e-6)  # the same face
        d = py["decision"]
        assert int(r[7]) == person[d.person] and float(r[8]) == pytest.approx(d.score, abs=1e-5)
        assert bool(int(r[9])) == d.granted and d.box == pytest.approx(py["box"])
        decided += 1
    assert at == len(lines) and decided >= 4  # most fixture frames gave the (random) detector a face
    grants = [py["decision"].granted for py in cases if py["faces"]]
    assert any(grants) and not all(grants)  # both verdicts are compared


@pytest.mark.slow  # shares the session's tiny models (see above); the checks take ~3 s
def test_export_bundles_the_detector_with_one_shared_arena(frame_models, tmp_path):
    """`export --detector`: both C arrays, detector_model.h, the frame module and the frame demo in the ESP-IDF
    project, ONE arena = the larger measured arena + margin; TFLM (the firmware's runtime) loads and invokes each
    model in exactly that many bytes, and not both in the smaller model's arena (the check can fail)."""
    from atalaia.api import export, load_run_model
    from atalaia.deploy.firmware import arena_with_margin
    from atalaia.deploy.tflm import check_shared_arena, check_tflm
    from atalaia.errors import DeployError

    model = load_run_model(frame_models["face_run"], detector=frame_models["det_run"])
    det, rec = check_tflm(frame_models["det_blob"]), check_tflm(frame_models["rec_blob"])
    shared = model.frame.shared_arena_bytes(model.arena_bytes)
    assert shared == arena_with_margin(max(det.arena_bytes, rec.arena_bytes))
    used = check_shared_arena([frame_models["det_blob"], frame_models["rec_blob"]], shared)
    assert used[0] <= shared and used[1] <= shared and max(used) >= max(det.arena_min_bytes, rec.arena_min_bytes) - 64
    small = min(det, rec, key=lambda r: r.arena_bytes)
    big = max(det, rec, key=lambda r: r.arena_bytes)
    if big.arena_min_bytes > small.arena_min_bytes + 64:
        with pytest.raises(DeployError, match="does not load"):
            check_shared_arena([frame_models["det_blob"], frame_models["rec_blob"]], small.arena_min_bytes)
    out = tmp_path / "export"
    paths = {p.relative_to(out).as_posix() for p in export(frame_models["face_run"], out=out, target="esp32s3",
                                                           detector=frame_models["det_run"])}
    main = "esp-idf-esp32s3/main/"
    need = {"detector_data.cc", "detector_model.h", "face_model.h", *[main + n for n in (
        "detector_data.cc", "detector_model.h", "frame_test.h", "atalaia_face_frame.c", "atalaia_face_detect.c",
        "atalaia_face.c", "model_data.cc")]}
    assert need <= paths, need - paths
    core = (out / main / "atalaia_core.cc").read_text()
    assert f"#define ATALAIA_ARENA_BYTES {shared}" in core and "FrameDemo(interpreter)" in core
    assert "g_detector" in core and core.count("atalaia_tensor_arena[kArenaSize]") == 1  # one arena
    cmake = (out / "esp-idf-esp32s3" / "main" / "CMakeLists.txt").read_text()
    assert '"atalaia_face_frame.c"' in cmake and '"detector_data.cc"' in cmake
    assert f"ONE tensor arena of {shared} bytes" in (out / "esp-idf-esp32s3" / "README.md").read_text()
    plain = load_run_model(frame_models["face_run"])
    assert plain.frame is None
    from atalaia.errors import AtalaiaError

    with pytest.raises(AtalaiaError, match="has no face model"):  # a detector goes with a face run only
        load_run_model(frame_models["det_run"], detector=frame_models["det_run"])

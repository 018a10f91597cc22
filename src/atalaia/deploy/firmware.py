"""ESP-IDF firmware project for an int8 model: C array, an op resolver with exactly the model's ops, the
arena sized from the TFLM measurement, and an on-device self-test.

The generated `main.cc` runs one embedded test input and compares the output with the int8 output LiteRT's
reference kernels gave on the host: the same check `atalaia run` does in the Python TFLM runtime, now on the
chip. It also times `Invoke()` with `esp_timer`, so the report's *estimated* latency can be replaced by a
measured one. Build: `idf.py set-target esp32s3 && idf.py build flash monitor` (ESP-IDF >= 5.1; the
`espressif/esp-tflite-micro` component is fetched by the IDF component manager at build time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atalaia.deploy.carray import to_c_array
from atalaia.errors import DeployError
from atalaia.ioutil import atomic_write_text

ARENA_MARGIN_BYTES = 1024  # TFLM's measured total + alignment slack; see deploy/tflm.py
FACE_C_DIR = Path(__file__).parent / "face_c"  # the on-device access-control module (plain C99)
FACE_C_FILES = ("atalaia_face.h", "atalaia_face.c")


def resolver_method(op: str) -> str:
    """TFLite builtin op name -> `MicroMutableOpResolver` method (CONV_2D -> AddConv2D)."""
    if op.startswith("CUSTOM:"):
        raise DeployError(f"custom op '{op}' has no TFLM kernel; rebuild the model with builtin layers")
    parts = []
    for p in op.split("_"):
        parts.append(p.upper() if p[:1].isdigit() or (len(p) == 2 and p[1:].isdigit()) else p.capitalize())
    return "Add" + "".join(parts)


def _c_bytes(values: np.ndarray, per_line: int = 16) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return ",\n  ".join(lines)


def write_esp_idf_project(
    blob: bytes,
    out_dir: str | Path,
    *,
    ops: list[str],
    arena_bytes: int,
    sample_input_q: np.ndarray,
    expected_output_q: np.ndarray,
    project_name: str = "atalaia_face",
    target: str = "esp32s3",
    face_facts: dict | None = None,
) -> list[Path]:
    """Write a buildable ESP-IDF project into `out_dir`; returns the files written.

    `face_facts` (a face run's `face_model.json`) adds the on-device access-control module
    (`atalaia_face.{h,c}` + `face_model.h`) and a boot demo: the self-test chip is embedded (with its mirror
    when the model was measured with mirror TTA), enrolled, and checked against the gallery."""
    out = Path(out_dir)
    unique_ops = sorted(set(ops))
    methods = [resolver_method(o) for o in unique_ops]
    arena = int(np.ceil((arena_bytes + ARENA_MARGIN_BYTES) / 16.0) * 16)
    h, cc = to_c_array(blob, "g_model")
    x = np.asarray(sample_input_q, dtype=np.int8).reshape(-1)
    y = np.asarray(expected_output_q, dtype=np.int8).reshape(-1)
    extra_src = ' "atalaia_face.c"' if face_facts else ""
    files = {
        "CMakeLists.txt": (
            "cmake_minimum_required(VERSION 3.16)\n"
            "include($ENV{IDF_PATH}/tools/cmake/project.cmake)\n"
            f"project({project_name})\n"
        ),
        "sdkconfig.defaults": (
            f'CONFIG_IDF_TARGET="{target}"\n'
            "CONFIG_ESP_MAIN_TASK_STACK_SIZE=8192\n"
            "CONFIG_COMPILER_OPTIMIZATION_PERF=y\n"
        ),
        "main/CMakeLists.txt": (
            f'idf_component_register(SRCS "main.cc" "model_data.cc"{extra_src} INCLUDE_DIRS ".")\n'
        ),
        "main/idf_component.yml": (
            "dependencies:\n"
            '  espressif/esp-tflite-micro: "^1.3.0"\n'
            '  idf: ">=5.1"\n'
        ),
        "main/model_data.h": h,
        "main/model_data.cc": cc,
        "main/self_test.h": (
            "// One test input and the int8 output LiteRT's reference kernels produced for it on the host.\n"
            "#pragma once\n#include <cstdint>\n"
            f"constexpr int kTestInputLen = {x.size};\n"
            f"constexpr int kTestOutputLen = {y.size};\n"
            f"alignas(16) static const int8_t kTestInput[{x.size}] = {{\n  {_c_bytes(x)}\n}};\n"
            f"static const int8_t kExpectedOutput[{y.size}] = {{\n  {_c_bytes(y)}\n}};\n"
        ),
        "main/main.cc": _MAIN_CC.format(
            arena=arena, measured=int(arena_bytes), n_ops=len(methods),
            adds="\n".join(f"  if (resolver.{m}() != kTfLiteOk) return false;" for m in methods),
            face_include='#include "atalaia_face.h"\n' if face_facts else "",
            face_demo=_FACE_DEMO if face_facts else "",
        ),
        "README.md": _README.format(project=project_name, target=target, arena=arena, measured=int(arena_bytes),
                                    ops=", ".join(unique_ops), flash=len(blob)),
    }
    if face_facts:
        from atalaia.deploy.carray import face_header

        files["main/face_model.h"] = face_header(face_facts)
        for name in FACE_C_FILES:
            files[f"main/{name}"] = (FACE_C_DIR / name).read_text()
    written = []
    for rel, text in files.items():
        written.append(atomic_write_text(out / rel, text))
    return written


_MAIN_CC = """\
// Generated by AtalaIA: runs the int8 model once on an embedded test input, checks the output against the
// host (LiteRT reference kernels), and times Invoke(). Arena = TFLM-measured {measured} B + margin.
#include <cstdio>
#include <cstdlib>

{face_include}#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"
#include "model_data.h"
#include "self_test.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {{
constexpr int kArenaSize = {arena};
alignas(16) uint8_t tensor_arena[kArenaSize];
tflite::MicroMutableOpResolver<{n_ops}> resolver;

bool RegisterOps() {{
{adds}
  return true;
}}
}}  // namespace

extern "C" void app_main(void) {{
  const tflite::Model* model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {{
    printf("model schema %lu != runtime %d\\n", (unsigned long)model->version(), TFLITE_SCHEMA_VERSION);
    return;
  }}
  if (!RegisterOps()) {{ printf("op registration failed\\n"); return; }}
  static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {{ printf("AllocateTensors failed (arena %d B)\\n", kArenaSize); return; }}
  printf("arena used: %u of %d bytes\\n", (unsigned)interpreter.arena_used_bytes(), kArenaSize);

  TfLiteTensor* input = interpreter.input(0);
  for (int i = 0; i < kTestInputLen; ++i) input->data.int8[i] = kTestInput[i];
  int64_t t0 = esp_timer_get_time();
  if (interpreter.Invoke() != kTfLiteOk) {{ printf("Invoke failed\\n"); return; }}
  int64_t t1 = esp_timer_get_time();

  TfLiteTensor* output = interpreter.output(0);
  int max_diff = 0, argmax = 0;
  for (int i = 0; i < kTestOutputLen; ++i) {{
    int d = abs(output->data.int8[i] - kExpectedOutput[i]);
    if (d > max_diff) max_diff = d;
    if (output->data.int8[i] > output->data.int8[argmax]) argmax = i;
  }}
  printf("invoke: %lld us; top-1 index %d; max |device - host| = %d int8 steps -> %s\\n",
         (long long)(t1 - t0), argmax, max_diff, max_diff <= 1 ? "PARITY OK" : "PARITY FAIL");
  for (int run = 0; run < 10; ++run) {{
    t0 = esp_timer_get_time();
    interpreter.Invoke();
    printf("invoke %d: %lld us\\n", run, (long long)(esp_timer_get_time() - t0));
  }}
{face_demo}  while (true) vTaskDelay(pdMS_TO_TICKS(1000));
}}
"""

_FACE_DEMO = """\
  // Access control on the device: embed the self-test chip (and its mirror with ATALAIA_FACE_MIRROR_TTA),
  // enrol it as person 0, then check it. Real use: fill `input` with a camera chip preprocessed as
  // face_model.h says, enrol a few chips per resident, and decide with the open-set threshold.
  {
    static atalaia_gallery_t gallery;
    static int8_t out_plain[ATALAIA_FACE_EMBEDDING_DIM], out_mirror[ATALAIA_FACE_EMBEDDING_DIM];
    float emb[ATALAIA_FACE_EMBEDDING_DIM];
    int64_t f0 = esp_timer_get_time();
    for (int i = 0; i < kTestInputLen; ++i) input->data.int8[i] = kTestInput[i];
    interpreter.Invoke();
    for (int i = 0; i < ATALAIA_FACE_EMBEDDING_DIM; ++i) out_plain[i] = output->data.int8[i];
#if ATALAIA_FACE_MIRROR_TTA
    static int8_t mirrored[ATALAIA_FACE_INPUT_SIZE * ATALAIA_FACE_INPUT_SIZE];
    atalaia_face_mirror_input(kTestInput, mirrored);
    for (int i = 0; i < kTestInputLen; ++i) input->data.int8[i] = mirrored[i];
    interpreter.Invoke();
    for (int i = 0; i < ATALAIA_FACE_EMBEDDING_DIM; ++i) out_mirror[i] = output->data.int8[i];
#endif
    atalaia_face_embedding(out_plain, out_mirror, emb);
    int64_t f1 = esp_timer_get_time();
    atalaia_gallery_init(&gallery);
    atalaia_gallery_enrol(&gallery, 0, emb);
    atalaia_decision_t d = atalaia_face_decide(&gallery, emb, -2.0f);  // -2: the open-set threshold
    printf("face: %lld us per face (%d inference(s)); enrolled 1 template; self-check person %d score %.4f "
           "threshold %.4f -> %s\\n", (long long)(f1 - f0), 1 + ATALAIA_FACE_MIRROR_TTA, d.person,
           (double)d.score, (double)d.threshold, d.granted ? "GRANTED" : "REFUSED");
  }
"""

_README = """\
# {project}: AtalaIA int8 model on {target}

Generated by `atalaia export`. Not compiled by AtalaIA's CI (no ESP-IDF there): build it on your machine.

```
idf.py set-target {target}
idf.py build flash monitor
```

- model: `main/model_data.cc` ({flash} bytes, the exact `.tflite` AtalaIA measured)
- ops registered: {ops}
- tensor arena: {arena} bytes (TFLM-measured {measured} B + 1 KB margin)
- on boot: one self-test input is run and compared with the host's LiteRT reference output
  (`PARITY OK` = at most 1 int8 step), then 10 timed `Invoke()` calls. Report those times next to the
  estimate in AtalaIA's report.
"""

"""Bare-metal Cortex-M firmware project for an int8 model: which TFLM sources it needs, and the project files.

The project compiles **only** the TFLM core plus the kernels of the model's ops (and, with CMSIS-NN, only the
CMSIS-NN functions those kernels call), because compiling all of TFLM + CMSIS-NN takes tens of minutes on a
small machine while a typical model needs a few dozen files. Which files: read from the TFLM tree itself
(`--tflm-root`), so the list follows the tree rather than a hand-kept table:

* op -> `MicroMutableOpResolver::AddX()` (the same name `firmware.resolver_method` gives) -> the
  `Register_Y()` it defaults to (parsed from `micro_mutable_op_resolver.h`) -> the kernel file defining
  `TFLMRegistration Register_Y(` (the `cmsis_nn/` override first when building with CMSIS-NN);
* each kernel file's own kernel headers `kernels/X.h` pull `kernels/X_common.cc` (and `X.cc` when X is a
  helper without registrations, e.g. `kernel_util`), recursively;
* CMSIS-NN: every `arm_*` name used by the chosen files -> the `.c` file defining it (file stem or a
  definition at the start of a line), recursively.

The tree must have the layout of TFLM's `create_tflm_tree.py` output (`third_party/` beside `tensorflow/`),
e.g. the repository's `../shared/vendor/tflm`. The project carries its own startup code, linker scripts (with
a flash/RAM fit check) and the QEMU instruction-count plugin, so the TFLM tree is needed only to compile.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atalaia.deploy.firmware import FaceTest, FrameBundle, arena_with_margin, core_files, resolver_method
from atalaia.errors import DeployError
from atalaia.ioutil import atomic_write_text

__all__ = ["CPUS", "CortexM", "TflmSources", "get_cpu", "resolve_sources", "tree_digest", "validate_tflm_root",
           "write_cortex_m_project"]

PORT_DIR = Path(__file__).parent / "cortex_m"  # startup, linker scripts, QEMU plugin (Apache-2.0, ours)


@dataclass(frozen=True)
class CortexM:
    """One Cortex-M core as we compile for it and emulate it."""

    name: str  # cortex-m4
    arch_flags: str  # gcc -mcpu/-mfpu/-mfloat-abi
    device: str  # CMSIS device header (ARMCM4 -> ARMCM4.h)
    qemu_machine: str  # qemu-system-arm -M
    linker_script: str  # file in PORT_DIR


CPUS: dict[str, CortexM] = {
    c.name: c
    for c in (
        CortexM("cortex-m4", "-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard", "ARMCM4", "mps2-an386",
                "mps2_an386.ld"),
        CortexM("cortex-m7", "-mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard", "ARMCM7", "mps2-an500",
                "mps2_an386.ld"),
        CortexM("cortex-m55", "-mcpu=cortex-m55 -mfloat-abi=hard", "ARMCM55", "mps3-an547", "mps3_an547.ld"),
        # ARMv6-M code runs unchanged on QEMU's Cortex-M3 board (ARMv7-M is a superset), so the count is exact
        CortexM("cortex-m0plus", "-mcpu=cortex-m0plus -mfloat-abi=soft", "ARMCM4", "mps2-an385",
                "mps2_an386.ld"),
    )
}


def get_cpu(name: str) -> CortexM:
    try:
        return CPUS[name]
    except KeyError:
        raise DeployError(f"unknown Cortex-M target {name!r}; valid: {', '.join(CPUS)}") from None


# Core sources every MicroInterpreter program needs (paths relative to the tree). Found by linking the
# self-test firmware: test helpers, recording allocators, profilers, audio `signal/` ops are left out.
CORE_SOURCES: tuple[str, ...] = (
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",
    "tensorflow/lite/core/api/flatbuffer_conversions.cc",
    "tensorflow/lite/core/api/tensor_utils.cc",
    "tensorflow/lite/core/c/common.cc",
    "tensorflow/lite/kernels/internal/common.cc",
    "tensorflow/lite/kernels/internal/quantization_util.cc",
    "tensorflow/lite/kernels/internal/runtime_shape.cc",
    "tensorflow/lite/kernels/internal/tensor_ctypes.cc",
    "tensorflow/lite/kernels/kernel_util.cc",
    "tensorflow/lite/micro/arena_allocator/non_persistent_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/arena_allocator/persistent_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.cc",
    "tensorflow/lite/micro/cortex_m_generic/debug_log.cc",
    "tensorflow/lite/micro/flatbuffer_utils.cc",
    "tensorflow/lite/micro/kernels/kernel_util.cc",
    "tensorflow/lite/micro/memory_helpers.cc",
    "tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc",
    "tensorflow/lite/micro/memory_planner/linear_memory_planner.cc",
    "tensorflow/lite/micro/memory_planner/non_persistent_buffer_planner_shim.cc",
    "tensorflow/lite/micro/micro_allocation_info.cc",
    "tensorflow/lite/micro/micro_allocator.cc",
    "tensorflow/lite/micro/micro_context.cc",
    "tensorflow/lite/micro/micro_interpreter.cc",
    "tensorflow/lite/micro/micro_interpreter_context.cc",
    "tensorflow/lite/micro/micro_interpreter_graph.cc",
    "tensorflow/lite/micro/micro_log.cc",
    "tensorflow/lite/micro/micro_op_resolver.cc",
    "tensorflow/lite/micro/micro_resource_variable.cc",
    "tensorflow/lite/micro/micro_utils.cc",
    "tensorflow/lite/micro/tflite_bridge/flatbuffer_conversions_bridge.cc",
    "tensorflow/lite/micro/tflite_bridge/micro_error_reporter.cc",
)
KERNELS_DIR = "tensorflow/lite/micro/kernels"
CMSIS_NN_SRC = "third_party/cmsis_nn/Source"
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
_TREE_MARKERS = (RESOLVER_HEADER, "third_party/flatbuffers/include", "third_party/cmsis_nn/Include",
                 "third_party/cmsis/CMSIS/Core/Include")


def validate_tflm_root(root: str | Path | None) -> Path:
    """`root` as a Path if it is a TFLM tree we can build from; DeployError naming what is missing otherwise."""
    if root is None:
        raise DeployError("a Cortex-M project compiles TFLM from source: pass --tflm-root DIR (a tree made by "
                          "TFLM's create_tflm_tree.py with CMSIS-NN, e.g. ../shared/vendor/tflm) or set "
                          "ATALAIA_TFLM_ROOT")
    p = Path(root).expanduser().resolve()
    missing = [m for m in _TREE_MARKERS if not (p / m).exists()]
    if missing:
        raise DeployError(f"--tflm-root {p} is not a TFLM tree with CMSIS-NN (missing {', '.join(missing)}); "
                          "make one with tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py "
                          "--makefile_options='OPTIMIZED_KERNEL_DIR=cmsis_nn'")
    return p


def tree_digest(root: Path) -> str:
    """SHA-256 (16 hex) of every C/C++ source and header under `root`: the compiled-library cache key, so a
    changed tree is never linked against objects built from the old one."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.suffix in (".c", ".cc", ".h", ".hpp", ".inc") and f.is_file():
            h.update(f.relative_to(root).as_posix().encode())
            h.update(b"\0")
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TflmSources:
    """Sources (relative to the TFLM tree) one model needs, per kernel set."""

    core: tuple[str, ...]
    kernels: dict[str, tuple[str, ...]]  # "cmsis_nn" | "reference" -> kernel .cc files
    cmsis_nn_c: tuple[str, ...]  # CMSIS-NN .c files (cmsis_nn kernel set only)

    def kernel_set_tag(self, kernels: str) -> str:
        """Short hash of the file list: names the cached archive of this kernel set."""
        files = self.core + self.kernels[kernels] + (self.cmsis_nn_c if kernels == "cmsis_nn" else ())
        return hashlib.sha256("\n".join(files).encode()).hexdigest()[:10]


def _registrations(root: Path) -> dict[str, str]:
    """AddX method name -> Register_Y function name, from the resolver header of the tree."""
    text = (root / RESOLVER_HEADER).read_text()
    out = {}
    for m in re.finditer(r"TfLiteStatus\s+(Add\w+)\s*\(([^)]*\)?)", text):
        reg = re.search(r"(Register_\w+)\s*\(", m.group(2))
        if reg:
            out[m.group(1)] = reg.group(1)
    return out


def _defining_file(root: Path, func: str, kernels: str) -> str:
    pat = re.compile(r"^TFLMRegistration\*?\s+" + re.escape(func) + r"\s*\(", re.M)
    dirs = ([f"{KERNELS_DIR}/cmsis_nn"] if kernels == "cmsis_nn" else []) + [KERNELS_DIR]
    for d in dirs:
        for f in sorted((root / d).glob("*.cc")):
            if pat.search(f.read_text(errors="replace")):
                return f.relative_to(root).as_posix()
    raise DeployError(f"the TFLM tree {root} has no kernel defining {func}()")


_KERNEL_INCLUDE = re.compile(r'#include\s+"tensorflow/lite/micro/kernels/(?:cmsis_nn/)?(\w+)\.h"')


def _kernel_closure(root: Path, files: list[str], kernels: str) -> list[str]:
    out = list(dict.fromkeys(files))
    i = 0
    while i < len(out):
        text = (root / out[i]).read_text(errors="replace")
        for stem in _KERNEL_INCLUDE.findall(text):
            for cand in (f"{KERNELS_DIR}/{stem}_common.cc", f"{KERNELS_DIR}/{stem}.cc"):
                p = root / cand
                if not p.is_file() or cand in out:
                    continue
                if cand.endswith(f"/{stem}.cc") and "TFLMRegistration Register_" in p.read_text(errors="replace"):
                    continue  # another op's kernel, not a helper
                if kernels == "cmsis_nn" and (root / KERNELS_DIR / "cmsis_nn" / f"{stem}.cc").is_file() \
                        and cand.endswith(f"/{stem}.cc"):
                    continue
                out.append(cand)
        i += 1
    return out


_ARM_NAME = re.compile(r"\b(arm_\w+)\s*\(")


def _cmsis_closure(root: Path, files: list[str]) -> list[str]:
    srcs = sorted((root / CMSIS_NN_SRC).rglob("*.c"))
    by_stem = {f.stem: f for f in srcs}
    texts = {f: f.read_text(errors="replace") for f in srcs}
    chosen: list[Path] = []
    seen_names: set[str] = set()
    queue = [(root / f).read_text(errors="replace") for f in files]
    while queue:
        text = queue.pop()
        for name in set(_ARM_NAME.findall(text)) - seen_names:
            seen_names.add(name)
            f = by_stem.get(name)
            if f is None:
                pat = re.compile(r"^[A-Za-z_][\w \*]*\b" + re.escape(name) + r"\s*\(", re.M)
                f = next((g for g in srcs if pat.search(texts[g])), None)
            if f is not None and f not in chosen:
                chosen.append(f)
                queue.append(texts[f])
    return sorted(f.relative_to(root).as_posix() for f in chosen)


def resolve_sources(root: Path, ops: list[str]) -> TflmSources:
    """The TFLM + CMSIS-NN sources a firmware with exactly `ops` (TFLite builtin names) needs."""

    regs = _registrations(root)
    kernel_files: dict[str, tuple[str, ...]] = {}
    for kernels in ("cmsis_nn", "reference"):
        files = []
        for op in sorted(set(ops)):
            method = resolver_method(op)
            if method not in regs:
                raise DeployError(f"op {op}: the TFLM tree {root} has no MicroMutableOpResolver::{method}()")
            files.append(_defining_file(root, regs[method], kernels))
        kernel_files[kernels] = tuple(f for f in _kernel_closure(root, files, kernels) if f not in CORE_SOURCES)
    missing = [f for f in CORE_SOURCES if not (root / f).is_file()]
    if missing:
        raise DeployError(f"the TFLM tree {root} lacks core sources {missing[:3]} (a different TFLM version?)")
    cmsis = _cmsis_closure(root, list(kernel_files["cmsis_nn"]))
    return TflmSources(core=CORE_SOURCES, kernels=kernel_files, cmsis_nn_c=tuple(cmsis))


# --------------------------------------------------------------------------------------------- project
def write_cortex_m_project(
    blob: bytes,
    out_dir: str | Path,
    *,
    cpu: str,
    tflm_root: Path,
    ops: list[str],
    arena_bytes: int,
    test_inputs_q: np.ndarray,
    test_outputs_q: np.ndarray,
    face_facts: dict | None = None,
    face_test: FaceTest | None = None,
    frame: FrameBundle | None = None,
    model_name: str = "g_model",
) -> list[Path]:
    """Write a bare-metal project (Makefile, `src/` = shared core + `main.cc` shim, `port/` = startup, linker
    script, QEMU plugin) into `out_dir`; returns the files written. `make` builds `build/firmware.elf`;
    `make run` runs it in QEMU (see README.md in the project)."""
    c = get_cpu(cpu)
    root = validate_tflm_root(tflm_root)
    srcs = resolve_sources(root, ops)
    core = core_files(blob, ops=ops, arena_bytes=arena_bytes, test_inputs_q=test_inputs_q,
                      test_outputs_q=test_outputs_q, face_facts=face_facts, face_test=face_test, frame=frame,
                      model_name=model_name)
    arena = frame.shared_arena_bytes(arena_bytes) if frame is not None else arena_with_margin(arena_bytes)
    app_c = ["port/startup_cm.c"] + (["src/atalaia_face.c"] if face_facts else [])
    if frame is not None:  # detector_data "c" -> build/app/detector_data.o, made from src/detector_data.cc
        app_c += ["src/atalaia_face_detect.c", "src/atalaia_face_frame.c", "src/detector_data.c"]

    def lst(files: tuple[str, ...] | list[str]) -> str:
        return " \\\n  ".join(files) if files else ""

    makefile = _MAKEFILE.format(
        cpu=c.name, root=root, arch=c.arch_flags, device=c.device, ld=c.linker_script, machine=c.qemu_machine,
        arena=arena, core=lst(srcs.core), k_cmsis=lst(srcs.kernels["cmsis_nn"]),
        k_ref=lst(srcs.kernels["reference"]), cmsis_c=lst(srcs.cmsis_nn_c),
        kset_cmsis=srcs.kernel_set_tag("cmsis_nn"), kset_ref=srcs.kernel_set_tag("reference"),
        app_c=lst(app_c),
    )
    files = {f"src/{k}": v for k, v in core.items()}
    files["src/main.cc"] = _CM_MAIN
    files["Makefile"] = makefile
    files["README.md"] = _CM_README.format(cpu=c.name, machine=c.qemu_machine, flash=len(blob), arena=arena,
                                           measured=int(arena_bytes), ops=", ".join(sorted(set(ops))),
                                           n=len(np.asarray(test_inputs_q).reshape(len(test_inputs_q), -1)))
    out = Path(out_dir)
    written = [atomic_write_text(out / rel, text) for rel, text in files.items()]
    for name in ("startup_cm.c", c.linker_script, "qemu_insncount.c"):
        written.append(atomic_write_text(out / "port" / name, (PORT_DIR / name).read_text()))
    return written


_CM_MAIN = """\
// Generated by AtalaIA: bare-metal Cortex-M shim around the shared core (atalaia_core.cc). stdout goes to
// semihosting (QEMU -semihosting, or a debugger); retarget _write() to a UART on a real board.
#include <cstdint>
#include <cstdio>

#include "atalaia_core.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"

#define ATALAIA_DEMCR (*(volatile uint32_t*)0xE000EDFCu)
#define ATALAIA_DWT_CTRL (*(volatile uint32_t*)0xE0001000u)
#define ATALAIA_DWT_CYCCNT (*(volatile uint32_t*)0xE0001004u)

// DWT cycle counter: real cycles on a chip; QEMU does not model it (reads 0), count instructions there.
extern "C" uint32_t atalaia_ticks(void) { return ATALAIA_DWT_CYCCNT; }
extern "C" const char* atalaia_tick_unit(void) { return "cycles"; }

static void Log(const char* s) { fputs(s, stdout); }

int main(void) {
  ATALAIA_DEMCR |= 1u << 24;  // TRCENA
  ATALAIA_DWT_CYCCNT = 0;
  ATALAIA_DWT_CTRL |= 1u;     // CYCCNTENA
  RegisterDebugLogCallback(Log);
  int rc = atalaia_run();
  printf("ATALAIA result %s\\n", rc == 0 ? "PASS" : "FAIL");
  fflush(stdout);
  return rc;
}
"""

_MAKEFILE = """\
# Generated by AtalaIA: bare-metal {cpu} firmware (TFLM + the model's kernels only).
#   make                       build build/firmware.elf (compiles the TFLM objects it needs into LIB_DIR)
#   make run                   run it in QEMU ({machine}, semihosting stdout)
#   make FLASH_SIZE=524288 RAM_SIZE=131072   link fails if the image does not fit that part
#   make KERNELS=reference     portable reference kernels instead of CMSIS-NN (20-30x slower)
TFLM_ROOT ?= {root}
CPU := {cpu}
KERNELS ?= cmsis_nn
OPT ?= -O2
BUILD ?= build
LIB_DIR ?= $(BUILD)/tflm-$(CPU)-$(KERNELS)
ARENA_BYTES ?= {arena}
LDSCRIPT ?= port/{ld}
LIBC_SPECS ?= --specs=nano.specs
FLASH_SIZE ?=
RAM_SIZE ?=
CROSS ?= arm-none-eabi-
CC := $(CROSS)gcc
CXX := $(CROSS)g++
AR := $(CROSS)ar

ARCH := {arch} -mthumb -mlittle-endian
INCLUDES := -Isrc -I$(TFLM_ROOT) -I$(TFLM_ROOT)/third_party -I$(TFLM_ROOT)/third_party/gemmlowp \\
  -I$(TFLM_ROOT)/third_party/flatbuffers/include -I$(TFLM_ROOT)/third_party/ruy \\
  -I$(TFLM_ROOT)/third_party/kissfft -I$(TFLM_ROOT)/third_party/cmsis/CMSIS/Core/Include \\
  -I$(TFLM_ROOT)/third_party/cmsis/Cortex_DFP/Device/{device}/Include \\
  -I$(TFLM_ROOT)/third_party/cmsis/Cortex_DFP/Device/{device}/Config \\
  -I$(TFLM_ROOT)/third_party/cmsis_nn -I$(TFLM_ROOT)/third_party/cmsis_nn/Include
# the defines of upstream `make TARGET=cortex_m_generic`
DEFINES := -DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -DKERNELS_OPTIMIZED_FOR_SPEED \\
  -DTF_LITE_MCU_DEBUG_LOG -DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE=\\"{device}.h\\" -D{device} \\
  -DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0
ifeq ($(KERNELS),cmsis_nn)
  DEFINES += -DCMSIS_NN
endif
COMMON := $(ARCH) $(OPT) -funsigned-char -fomit-frame-pointer -ffunction-sections -fdata-sections \\
  -fno-unwind-tables -fno-asynchronous-unwind-tables -fmessage-length=0 -Wall -Wno-unused-parameter \\
  -Wno-type-limits $(DEFINES) $(INCLUDES)
CXXFLAGS := $(COMMON) -std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics -Wnon-virtual-dtor
CFLAGS := $(COMMON) -std=c17

CORE_SRCS := \\
  {core}
KERNEL_SRCS_cmsis_nn := \\
  {k_cmsis}
KERNEL_SRCS_reference := \\
  {k_ref}
CMSIS_NN_SRCS := \\
  {cmsis_c}
KSET_cmsis_nn := {kset_cmsis}
KSET_reference := {kset_ref}

LIB_SRCS := $(CORE_SRCS) $(KERNEL_SRCS_$(KERNELS))
ifeq ($(KERNELS),cmsis_nn)
  LIB_SRCS += $(CMSIS_NN_SRCS)
endif
LIB_OBJS := $(addprefix $(LIB_DIR)/obj/,$(addsuffix .o,$(basename $(LIB_SRCS))))
TFLM_LIB := $(LIB_DIR)/libtflm_$(KSET_$(KERNELS)).a

APP_OBJS := $(BUILD)/app/main.o $(BUILD)/app/atalaia_core_$(ARENA_BYTES).o $(BUILD)/app/model_data.o \\
  $(addprefix $(BUILD)/app/,$(notdir $(patsubst %.c,%.o,{app_c})))
, := ,
FIT := $(if $(FLASH_SIZE),-Wl$(,)--defsym=FLASH_SIZE=$(FLASH_SIZE)) $(if $(RAM_SIZE),-Wl$(,)--defsym=RAM_SIZE=$(RAM_SIZE))

.PHONY: all lib link run clean
all: link
lib: $(TFLM_LIB)

# objects are written to a temporary name and renamed: a killed build never leaves a half object behind
$(LIB_DIR)/obj/%.o: $(TFLM_ROOT)/%.cc
\t@mkdir -p $(dir $@)
\t@echo "CXX $*.cc"
\t@$(CXX) $(CXXFLAGS) -c $< -o $@.tmp && mv $@.tmp $@
$(LIB_DIR)/obj/%.o: $(TFLM_ROOT)/%.c
\t@mkdir -p $(dir $@)
\t@echo "CC  $*.c"
\t@$(CC) $(CFLAGS) -c $< -o $@.tmp && mv $@.tmp $@
$(TFLM_LIB): $(LIB_OBJS)
\t@rm -f $@.tmp
\t@$(AR) rcs $@.tmp $^ && mv $@.tmp $@

$(BUILD)/app/atalaia_core_$(ARENA_BYTES).o: src/atalaia_core.cc src/*.h
\t@mkdir -p $(dir $@)
\t$(CXX) $(CXXFLAGS) -DATALAIA_ARENA_BYTES=$(ARENA_BYTES) -c $< -o $@
$(BUILD)/app/%.o: src/%.cc src/*.h
\t@mkdir -p $(dir $@)
\t$(CXX) $(CXXFLAGS) -c $< -o $@
$(BUILD)/app/%.o: src/%.c src/*.h
\t@mkdir -p $(dir $@)
\t$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/app/%.o: port/%.c
\t@mkdir -p $(dir $@)
\t$(CC) $(CFLAGS) -c $< -o $@

# always relinks (cheap), so FLASH_SIZE / RAM_SIZE / ARENA_BYTES changes take effect
link: $(APP_OBJS) $(TFLM_LIB)
\t$(CXX) $(ARCH) -T $(LDSCRIPT) $(FIT) -nostartfiles $(LIBC_SPECS) --specs=rdimon.specs -Wl,--gc-sections \\
\t  -Wl,-Map=$(BUILD)/firmware.map $(APP_OBJS) $(TFLM_LIB) -lm -o $(BUILD)/firmware.elf
\t$(CROSS)size -A $(BUILD)/firmware.elf

run: link
\tqemu-system-arm -M {machine} -nographic -semihosting -icount shift=0 -kernel $(BUILD)/firmware.elf

clean:
\trm -rf $(BUILD)
"""

_CM_README = """\
# AtalaIA int8 model, bare-metal {cpu}

Generated by `atalaia export --target {cpu}`. Needs Debian's `gcc-arm-none-eabi libnewlib-arm-none-eabi
libstdc++-arm-none-eabi-newlib` (and `qemu-system-arm` to emulate).

```
make -j2            # build/firmware.elf; compiles only the TFLM core + this model's kernels
make run            # QEMU {machine}: prints the self-test results
make FLASH_SIZE=524288 RAM_SIZE=131072   # the link fails if the image does not fit such a part
```

- model: `src/model_data.cc` ({flash} bytes, the exact `.tflite` AtalaIA measured), aligned const array (flash)
- ops registered: {ops}
- tensor arena: {arena} bytes (TFLM-measured {measured} B + 1 KB margin); `ARENA_BYTES=` overrides it
- on boot: {n} self-test inputs run and compared with the host's int8 outputs (`ATALAIA summary ... BIT-EXACT`),
  `bench_marker_start/stop` around each `Invoke()` (`atalaia firmware --emulate` counts the instructions between
  them with the QEMU plugin in `port/`); DWT cycle counts are printed too (0 under QEMU, which has no DWT).
- `src/atalaia_core.cc` is the same core the ESP-IDF project runs; `src/main.cc` is the Cortex-M shim.
- `port/` (startup, linker script with a flash/RAM fit check, QEMU plugin) is AtalaIA's, Apache-2.0.
"""

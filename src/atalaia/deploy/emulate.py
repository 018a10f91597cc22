"""Build a Cortex-M firmware project with arm-none-eabi-gcc, run it in QEMU, and read what it did.

* **Build.** The project's Makefile compiles only the TFLM sources the model needs into a cache directory
  keyed by the TFLM tree's content digest, the CPU, the kernel set and the compiler flags
  (`~/.cache/atalaia/tflm/<tree>/<cpu>-<kernels>-<flags>/`), so a second model reuses every object it can
  and a changed tree or flag never links stale objects. Objects are renamed into place, and a file lock
  serialises concurrent builds of one cache directory.
* **Fit.** With a part (`targets.PARTS`), the link passes the part's flash and SRAM to the linker script,
  whose ASSERTs fail the link when the image does not fit; we then relink without limits only to say by how
  much.
* **Run.** `qemu-system-arm -icount shift=0` with a ~60-line TCG plugin that counts the guest instructions
  between `bench_marker_start()` and `bench_marker_stop()` (called around every `Invoke()`). These are
  **instruction counts on an emulated core**: QEMU models no pipeline, cache or flash wait states, so a
  latency from them is an estimate (`targets.estimate_ms_from_instructions`).
* **Sizes.** From the ELF (`arm-none-eabi-size -A`) and the linker map: every input section is attributed to
  the model array, the self-test data, the tensor arena, TFLM + CMSIS-NN (`libtflm_*.a`), the C/C++ libraries,
  or the application (startup, shim, core, face module).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atalaia.deploy.cortex_m import get_cpu, tree_digest, validate_tflm_root
from atalaia.errors import DeployError
from atalaia.ioutil import file_lock

__all__ = ["BuildResult", "EmulationResult", "build_firmware", "default_cache_dir", "elf_sizes", "map_split",
           "parse_firmware_output", "require_toolchain", "run_qemu"]

TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-nm", "make")
_APT = ("apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
        "qemu-system-arm")


def require_toolchain(emulate: bool = False) -> None:
    """DeployError naming the missing tools (and the Debian packages that provide them)."""
    need = list(TOOLS) + (["qemu-system-arm", "gcc"] if emulate else [])
    missing = [t for t in need if shutil.which(t) is None]
    if missing:
        raise DeployError(f"missing {', '.join(missing)} on PATH: {_APT} (Debian/Ubuntu)")


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "atalaia" / "tflm"


def _flags_digest(makefile: str) -> str:
    """Digest of the Makefile's compiler-flag block (ARCH ... CFLAGS): part of the object cache key."""
    m = re.search(r"^ARCH :=.*?^CFLAGS :=[^\n]*", makefile, re.S | re.M)
    return hashlib.sha256((m.group(0) if m else makefile).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class BuildResult:
    elf: Path
    map_file: Path
    lib_dir: Path
    arena_bytes: int | None  # ARENA_BYTES override used (None: the project's own)
    seconds: float
    lib_seconds: float


def _make(project: Path, args: list[str], jobs: int) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(project), f"-j{jobs}", *args], capture_output=True, text=True)


def build_firmware(
    project: str | Path,
    *,
    tflm_root: str | Path,
    cpu: str,
    kernels: str = "cmsis_nn",
    cache_dir: str | Path | None = None,
    part: Any = None,
    arena_bytes: int | None = None,
    jobs: int = 2,
) -> BuildResult:
    """Compile the needed TFLM objects (cached) and link `project/build/firmware.elf`.

    `part`: a `targets.McuPart` whose flash/SRAM the link must fit (DeployError saying by how much when not).
    """
    require_toolchain()
    project = Path(project)
    root = validate_tflm_root(tflm_root)
    c = get_cpu(cpu)
    if kernels not in ("cmsis_nn", "reference"):
        raise DeployError(f"kernels must be 'cmsis_nn' or 'reference', got {kernels!r}")
    makefile = (project / "Makefile").read_text()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    lib_dir = (cache / tree_digest(root) / f"{c.name}-{kernels}-{_flags_digest(makefile)}").resolve()
    common = [f"TFLM_ROOT={root}", f"KERNELS={kernels}", f"LIB_DIR={lib_dir}"]
    if arena_bytes is not None:
        common.append(f"ARENA_BYTES={int(arena_bytes)}")
    t0 = time.perf_counter()
    with file_lock(lib_dir / ".lock"):
        r = _make(project, ["lib", *common], jobs)
    lib_seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise DeployError(f"compiling TFLM for {c.name} failed:\n{_tail(r.stderr or r.stdout)}")
    elf = project / "build" / "firmware.elf"
    elf.unlink(missing_ok=True)
    fit = [f"FLASH_SIZE={part.flash_bytes}", f"RAM_SIZE={part.sram_bytes}"] if part is not None else []
    r = _make(project, ["link", *common, *fit], jobs)
    if r.returncode != 0:
        text = r.stderr + r.stdout
        if part is not None and "does not fit" in text:
            r2 = _make(project, ["link", *common], jobs)
            sizes = elf_sizes(elf) if r2.returncode == 0 else {}
            raise DeployError(
                f"the firmware does not fit {part.name} ({part.flash_bytes // 1024} KB flash, "
                f"{part.sram_bytes // 1024} KB SRAM): it needs {sizes.get('flash_bytes', '?')} B flash and "
                f"{sizes.get('ram_bytes', '?')} B RAM (arena {sizes.get('split', {}).get('arena', '?')} B + "
                "8 KB heap + 16 KB stack); pick a bigger part or a smaller model")
        raise DeployError(f"linking the firmware failed:\n{_tail(text)}")
    return BuildResult(elf=elf, map_file=project / "build" / "firmware.map", lib_dir=lib_dir,
                       arena_bytes=arena_bytes, seconds=time.perf_counter() - t0, lib_seconds=lib_seconds)


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


# --------------------------------------------------------------------------------------------- sizes
_FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array", ".data")
_RAM_SECTIONS = (".data", ".bss", ".heap", ".stack")
_LIBC = re.compile(r"/lib(c|g|m|c_nano|g_nano|stdc\+\+|stdc\+\+_nano|supc\+\+|supc\+\+_nano|gcc|rdimon|"
                   r"rdimon_nano|nosys)\.a\(|crt\w*\.o")
_INPUT_ONE = re.compile(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_INPUT_HEAD = re.compile(r"^ (\S+)$")
_INPUT_TAIL = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_OUTPUT = re.compile(r"^(\.[\w.]+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+")
_SELF_TEST = ("atalaia_test_inputs", "atalaia_test_outputs", "kFaceEnrol", "kFaceProbe")


def _category(section: str, origin: str, model_name: str) -> str:
    if not section.startswith(".text"):  # data sections are named after their symbol (-fdata-sections)
        if section.endswith("." + model_name):
            return "model"
        if "atalaia_tensor_arena" in section:
            return "arena"
        if any(s in section for s in _SELF_TEST):
            return "self_test"
    if "libtflm_" in origin:
        return "tflm"
    if _LIBC.search(origin):
        return "libc"
    return "app"


def map_split(map_file: Path, model_name: str) -> dict[str, dict[str, int]]:
    """{output section: {category: bytes}} from the linker map's input sections."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    pending = None
    text = map_file.read_text(errors="replace")
    body = text.split("Linker script and memory map", 1)[-1]
    for line in body.splitlines():
        m = _OUTPUT.match(line)
        if m:
            cur, pending = m.group(1), None
            continue
        if cur is None:
            continue
        m1 = _INPUT_ONE.match(line)
        if m1:
            sec, size, origin = m1.group(1), int(m1.group(3), 16), m1.group(4)
        elif pending and (m2 := _INPUT_TAIL.match(line)):
            sec, size, origin = pending, int(m2.group(2), 16), m2.group(3)
        else:
            h = _INPUT_HEAD.match(line)
            pending = h.group(1) if h and not h.group(1).startswith("*") else None
            continue
        pending = None
        if sec.startswith("*") or size == 0:
            continue
        cat = _category(sec, origin, model_name)
        out.setdefault(cur, {}).setdefault(cat, 0)
        out[cur][cat] += size
    return out


def elf_sizes(elf: str | Path, map_file: str | Path | None = None, model_name: str = "g_model") -> dict:
    """Linked sizes of the ELF: sections, flash and RAM as the linker placed them, and (with the map file) the
    split into model / self_test / arena / tflm (TFLM + CMSIS-NN) / libc / app."""
    r = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    sections = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sum(sections.get(s, 0) for s in _FLASH_SECTIONS)
    ram = sum(sections.get(s, 0) for s in _RAM_SECTIONS)
    out: dict[str, Any] = {
        "sections": {k: v for k, v in sections.items() if not k.startswith((".debug", ".comment", ".ARM.attr"))},
        "flash_bytes": flash,
        "ram_bytes": ram,
    }
    mp = Path(map_file) if map_file else Path(elf).with_suffix(".map")
    if mp.is_file():
        by_sec = map_split(mp, model_name)
        split: dict[str, int] = {}
        for sec, cats in by_sec.items():
            if sec in _FLASH_SECTIONS or sec == ".bss":
                for k, v in cats.items():
                    split[k] = split.get(k, 0) + v
        out["split"] = split
        out["split_by_section"] = {s: by_sec[s] for s in (".text", ".rodata", ".data", ".bss") if s in by_sec}
        out["flash_without_self_test_bytes"] = flash - sum(
            by_sec.get(s, {}).get("self_test", 0) for s in _FLASH_SECTIONS)
    return out


# --------------------------------------------------------------------------------------------- QEMU
def _plugin(cache: Path, source: Path) -> Path:
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    so = cache / f"libinsncount-{digest}.so"
    if not so.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        r = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(tmp), str(source)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise DeployError(f"building the QEMU instruction-count plugin failed:\n{_tail(r.stderr)}")
        os.replace(tmp, so)
    return so


def _symbol(elf: Path, name: str) -> int:
    r = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True)
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise DeployError(f"{elf} has no symbol {name} (not an AtalaIA firmware?)")


@dataclass(frozen=True)
class EmulationResult:
    stdout: str
    instructions: list[int]  # per marker region, in order
    total_instructions: int
    seconds: float
    machine: str


def run_qemu(elf: str | Path, *, cpu: str, plugin_source: str | Path, cache_dir: str | Path | None = None,
             timeout: float = 600.0) -> EmulationResult:
    """Run the firmware on QEMU's board for `cpu` with the instruction-count plugin."""
    require_toolchain(emulate=True)
    elf = Path(elf)
    c = get_cpu(cpu)
    so = _plugin(Path(cache_dir).expanduser() if cache_dir else default_cache_dir(), Path(plugin_source))
    start, stop = _symbol(elf, "bench_marker_start"), _symbol(elf, "bench_marker_stop")
    cmd = ["qemu-system-arm", "-M", c.qemu_machine, "-nographic", "-semihosting", "-icount", "shift=0",
           "-plugin", f"{so},start={start:#x},stop={stop:#x}", "-d", "plugin", "-kernel", str(elf)]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise DeployError(f"QEMU did not finish in {timeout:.0f} s ({' '.join(cmd)})") from e
    regions = [int(m) for m in re.findall(r"PLUGIN region \d+ insns (\d+)", r.stderr + r.stdout)]
    total = re.search(r"PLUGIN total insns (\d+)", r.stderr + r.stdout)
    if "*** FAULT" in r.stdout or r.returncode != 0 and "ATALAIA result" not in r.stdout:
        raise DeployError(f"the firmware crashed in QEMU {c.qemu_machine} (exit {r.returncode}):\n"
                          f"{_tail(r.stdout + r.stderr)}")
    return EmulationResult(stdout=r.stdout, instructions=regions, total_instructions=int(total.group(1)) if total
                           else 0, seconds=time.perf_counter() - t0, machine=c.qemu_machine)


_SAMPLE = re.compile(r"^ATALAIA selftest (\d+) max_diff (\d+) same (\d+)/(\d+) top1 (\d+)", re.M)
_FRAME = re.compile(r"^ATALAIA frame probe (\d+) status (-?\d+) faces (\d+) box_e3 (-?\d+) (-?\d+) (-?\d+) (-?\d+) "
                    r"person (-?\d+) score_e6 (-?\d+) granted (\d)", re.M)
_FRAME_ARENA = re.compile(r"^ATALAIA frame shared_arena (\d+) detector_used (\d+) recogniser_used (\d+)", re.M)
_FACE = re.compile(r"^ATALAIA face probe (\d+) person (-?\d+) score_e6 (-?\d+) threshold_e6 (-?\d+) granted (\d)",
                   re.M)


def parse_firmware_output(stdout: str) -> dict[str, Any]:
    """The `ATALAIA ...` lines of a run as a dict (see firmware.py's core)."""
    arena = re.search(r"^ATALAIA arena_used (\d+) arena_size (\d+)", stdout, re.M)
    err = re.search(r"^ATALAIA error (.*)$", stdout, re.M)
    samples = [{"sample": int(a), "max_diff": int(b), "same": int(c), "outputs": int(d), "top1": int(e)}
               for a, b, c, d, e in _SAMPLE.findall(stdout)]
    faces = [{"probe": int(a), "person": int(b), "score": int(c) / 1e6, "threshold": int(d) / 1e6,
              "granted": bool(int(g))} for a, b, c, d, g in _FACE.findall(stdout)]
    frames = [{"frame": int(m[0]), "status": int(m[1]), "faces": int(m[2]), "box": [int(v) / 1e3 for v in m[3:7]],
               "person": int(m[7]), "score": int(m[8]) / 1e6, "granted": bool(int(m[9]))}
              for m in _FRAME.findall(stdout)]
    fa = _FRAME_ARENA.search(stdout)
    res = re.search(r"^ATALAIA result (\w+)", stdout, re.M)
    return {
        "arena_used_bytes": int(arena.group(1)) if arena else None,
        "arena_size_bytes": int(arena.group(2)) if arena else None,
        "error": err.group(1).strip() if err else None,
        "samples": samples,
        "bit_exact_samples": sum(s["max_diff"] == 0 for s in samples),
        "max_diff_steps": max((s["max_diff"] for s in samples), default=None),
        "face_probes": faces,
        "frame_probes": frames,
        "frame_arena": {"shared_bytes": int(fa.group(1)), "detector_used_bytes": int(fa.group(2)),
                        "recogniser_used_bytes": int(fa.group(3))} if fa else None,
        "result": res.group(1) if res else None,
    }

"""Load test of `atalaia serve` on loopback: N concurrent clients send recognise requests for a fixed time.

Usage:
    python benchmarks/app.py [--clients 8] [--seconds 20] [--burst 1 3] [--lfw DIR]
        [--out benchmarks/results/app.json]

What is measured: the whole service path (HTTP + multipart upload of a 112x112 LFW chip + decode + int8
inference with mirror TTA + 1-NN against the gallery + the event row written to SQLite + JSON answer), from
`--clients` threads on this machine to one `atalaia serve` process (uvicorn, one worker) on 127.0.0.1.

Which model: there is no trained face run on this machine, so the benchmark builds one with the architecture
of `recipes/lfw.yaml`'s student (ds_cnn width 1.5, 64x64 grey, 128-d, GDC head, mirror TTA: two inferences per
face) with *untrained* weights, quantized to int8. Latency and throughput depend on the architecture, not
on the weights; the decisions it makes are meaningless and are not reported. The rate limit is raised
(`--recognise-rate`) so the load test measures the service, not the limiter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED_LFW = Path("/work/shared/datasets/lfw")
PW, TOKEN = "load-test-password", "load-test-door-token"


def build_run(run: Path) -> Path:
    """An int8 run folder with the LFW recipe student's architecture (untrained weights)."""
    from atalaia.pipeline.runfolder import RunFolder

    if RunFolder(run).finished("int8_litert"):
        return run
    import keras
    import numpy as np

    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.train import build_student
    from atalaia.pipeline.runfolder import write_marker

    keras.utils.set_random_seed(0)
    m = build_student(64, width=1.5, embedding_dim=128, head="gap")  # recipes/lfw.yaml's student
    rep = np.random.default_rng(0).uniform(0, 1, (64, 64, 64, 1)).astype(np.float32)
    blob = convert_int8(m, rep)
    st = run / "int8_litert"
    st.mkdir(parents=True, exist_ok=True)
    (st / "model.tflite").write_bytes(blob)
    r = TFLiteRunner(blob)
    (st / "face_model.json").write_text(json.dumps({
        "grey": True, "crop": 0.7, "input_size": 64, "embedding_dim": 128, "mirror_tta": True,
        "input_scale": r.input_scale, "input_zero_point": r.input_zero_point, "threshold_far_1e-3": 0.65,
        "note": "untrained weights: for load testing only"}))
    (st / "metrics.json").write_text("{}")
    write_marker(st, "untrained")  # DONE.json with the files' checksums, as a finished stage has
    return run


def load_phase(url: str, probes: list[bytes], clients: int, seconds: float, burst: int) -> dict:
    """`clients` threads, each sending recognise requests of `burst` frames back to back for `seconds`."""
    import httpx
    import numpy as np

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        c = httpx.Client(base_url=url, headers={"X-Door-Token": TOKEN}, timeout=30)
        i = k
        while time.perf_counter() < stop_at:
            frames = [probes[(i + j) % len(probes)] for j in range(burst)]
            t = time.perf_counter()
            try:
                r = c.post("/api/recognize", files=[("files", (f"f{j}.jpg", b, "image/jpeg"))
                                                    for j, b in enumerate(frames)])
                ok = r.status_code == 200 and "granted" in r.json()
                err = None if ok else f"{r.status_code} {r.text[:100]}"
            except httpx.HTTPError as e:
                err = f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t
            with lock:
                (errors.append(err) if err else lat.append(dt))
            i += clients
        c.close()

    t_start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    ms = np.asarray(lat) * 1e3
    return {"frames_per_request": burst, "clients": clients, "seconds": round(wall, 2), "requests_ok": len(lat),
            "errors": len(errors), "error_examples": errors[:3], "requests_per_s": round(len(lat) / wall, 2),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 2),
                           "p95": round(float(np.percentile(ms, 95)), 2),
                           "p99": round(float(np.percentile(ms, 99)), 2),
                           "max": round(float(ms.max()), 2)} if len(ms) else None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--burst", type=int, nargs="+", default=[1, 3], help="frames per request, one phase each")
    ap.add_argument("--lfw", type=Path, default=SHARED_LFW)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "app.json")
    ap.add_argument("--work", type=Path, default=HERE / ".work" / "app_load", help="model + server log folder")
    a = ap.parse_args(argv)
    if a.clients < 1 or a.seconds <= 0 or a.seconds > 300:
        raise SystemExit("--clients >= 1 and 0 < --seconds <= 300")

    import httpx

    load_before = round(os.getloadavg()[0], 2)
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    run = build_run(work / "run")
    for f in ("access.db", "access.db-wal", "access.db-shm"):
        (run / "access" / f).unlink(missing_ok=True)
    chips_root = a.lfw / "chips112_gray"
    people = [d for d in sorted(chips_root.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 8][:5]
    if len(people) < 5:
        raise SystemExit(f"need LFW chips in {chips_root}")
    port = free_port()
    env = {**os.environ, "ATALAIA_ADMIN_PASSWORD": PW, "ATALAIA_DOOR_TOKEN": TOKEN, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "atalaia.cli", "serve", str(run), "--port", str(port),
                             "--aligned", "--threshold", "far_1e-3", "--recognise-rate", "100000"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    phases = []
    try:
        t0 = time.time()
        while True:
            try:
                httpx.get(url + "/api/health", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.time() - t0 > 120:
                    raise SystemExit((work / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        admin = httpx.Client(base_url=url)
        csrf = admin.post("/api/login", json={"password": PW}).json()["csrf"]
        for d in people:
            fs = sorted(d.glob("*.jpg"))[:5]
            r = admin.post("/api/people", data={"name": d.name}, headers={"X-CSRF-Token": csrf},
                           files=[("files", (f.name, f.read_bytes(), "image/jpeg")) for f in fs])
            r.raise_for_status()
        probes = [f.read_bytes() for d in people for f in sorted(d.glob("*.jpg"))[5:8]]
        for burst in a.burst:
            phases.append(load_phase(url, probes, a.clients, a.seconds, burst))
            print(f"burst {burst}: {phases[-1]['requests_ok']} ok, {phases[-1]['errors']} errors, "
                  f"{phases[-1]['requests_per_s']} req/s, latency {phases[-1]['latency_ms']}")
        health = admin.get("/api/health").json()
        events = admin.get("/api/events", params={"kind": "check", "per_page": 1}).json()["total"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    doc = {"benchmark": "app_load", "what": "POST /api/recognize (multipart 112x112 LFW chips, door token) to "
                                            "`atalaia serve` on 127.0.0.1, uvicorn 1 worker, SQLite WAL store",
           "model": "recipes/lfw.yaml student architecture (ds_cnn width 1.5, 64x64 grey, 128-d, GDC), UNTRAINED "
                    "weights, int8, LiteRT, mirror TTA (2 inferences per frame); decisions not meaningful",
           "gallery": f"{len(people)} people x 5 templates", "phases": phases,
           "decisions_logged": events, "health_after": health,
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                       "cpus": os.cpu_count(), "load_avg_1min_before": load_before,
                       "load_avg_1min_after": round(os.getloadavg()[0], 2),
                       "note": "cores shared with other work while measuring: see the load averages"}}
    from atalaia.ioutil import atomic_write_json

    atomic_write_json(a.out, doc)
    return doc


if __name__ == "__main__":
    main()

"""Fixtures for the door-access service: a tiny int8 face run (random-weight student on the generated grating
chips, which dlib cannot detect: everything here runs in the access core's `aligned` mode), and database URLs
for SQLite and, when ATALAIA_PG_URL is set, a fresh schema on PostgreSQL."""

from __future__ import annotations

import importlib.util
import json
import os
import uuid
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_face_conftest", Path(__file__).parents[1] / "face" / "conftest.py")
_face = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_face)
face_data = _face.face_data  # the generated chip fixtures (session scope)

PG_URL = os.environ.get("ATALAIA_PG_URL")


def chips(face_data, ident: int) -> list[Path]:
    return sorted((face_data["chipset"] / "chips112" / f"{ident:05d}").glob("*.jpg"))


def make_face_run(face_data, run: Path) -> Path:
    """A run folder with what the service reads: int8_litert/{model.tflite, face_model.json, DONE.json} and a
    report.json for the model card."""
    import keras

    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.data import load_chip_sets, representative_inputs
    from atalaia.face.train import build_student
    from atalaia.pipeline.runfolder import write_marker

    keras.utils.set_random_seed(0)  # the same random-weight student every time
    cs = load_chip_sets([face_data["chipset"]], 32)
    m = build_student(32, width=0.25, embedding_dim=16)
    blob = convert_int8(m, representative_inputs(cs.images, 16))
    st = run / "int8_litert"
    st.mkdir(parents=True)
    (st / "model.tflite").write_bytes(blob)
    r = TFLiteRunner(blob)
    (st / "face_model.json").write_text(json.dumps({
        "grey": True, "crop": 1.0, "input_size": 32, "embedding_dim": 16,
        "input_scale": r.input_scale, "input_zero_point": r.input_zero_point,
        "threshold_lfw_accuracy": 0.5, "threshold_far_1e-3": 0.9, "threshold_far_1e-2": float("nan"),
        "impostor_tail": {"pairs": 10**6, "thresholds": {"0.01": 0.6, "0.001": 0.8, "0.0001": 0.95}}}))
    (st / "metrics.json").write_text("{}")
    write_marker(st, "test")  # DONE.json with the files' checksums, as a finished stage has
    (run / "report.json").write_text(json.dumps({  # the fields the model card reads, as a face run writes them
        "recipe_name": "tiny", "task": "verification",
        "stages": [{"stage": "int8_litert", "model": "ds_cnn", "dtype": "int8", "params": m.count_params(),
                    "macs": 123456, "flash_bytes": len(blob), "arena_bytes": 20480,
                    "est_latency_ms": {"esp32s3": 1.5}}],
        "verification": {"models": {"int8_litert": {"acc_mean": 0.61, "acc_std": 0.02, "auc": 0.66,
                                                    "tar_at_far_0.01": 0.3, "tar_at_far_0.001": 0.1}}}}))
    return run


@pytest.fixture(scope="session")
def face_run(face_data, tmp_path_factory) -> Path:
    return make_face_run(face_data, tmp_path_factory.mktemp("serve_run") / "run")


def _pg_schema_url() -> str:
    """ATALAIA_PG_URL with a fresh schema as the search path (each test starts from an empty database)."""
    import psycopg2

    dsn = "postgresql://" + PG_URL.split("://", 1)[1]
    schema = "t_" + uuid.uuid4().hex[:12]
    con = psycopg2.connect(dsn)
    con.autocommit = True
    con.cursor().execute(f"CREATE SCHEMA {schema}")
    con.close()
    return dsn + ("&" if "?" in dsn else "?") + f"options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'access.db'}"
    if not PG_URL:
        if os.environ.get("ATALAIA_REQUIRE_PG"):
            pytest.fail("ATALAIA_REQUIRE_PG is set but ATALAIA_PG_URL is not")
        pytest.skip("ATALAIA_PG_URL not set (run: eval \"$(bash .ci/postgres.sh)\")")
    return _pg_schema_url()


class Mosquitto:
    """Debian's mosquitto on a free loopback port, with persistence (so a restart keeps queued QoS 1 messages
    for persistent subscribers, as a real broker would)."""

    def __init__(self, workdir: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {self.dir}/\nautosave_interval 1\n")
        self.proc = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        import socket
        import subprocess
        import time

        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log.txt", "a"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {(self.dir / 'log.txt').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: saves the persistence file
            self.proc.wait(timeout=10)
        self.proc = None


MOSQUITTO = next((p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).is_file()), None)


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        if os.environ.get("ATALAIA_REQUIRE_MQTT"):
            pytest.fail("ATALAIA_REQUIRE_MQTT is set but mosquitto is not installed (apt-get install mosquitto)")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    b = Mosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()

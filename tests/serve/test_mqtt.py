"""Events on a real MQTT broker (Debian's mosquitto on a loopback port): event + retained state + Home Assistant
discovery arrive, a device decision is ingested, and a broker that goes down mid-run neither blocks nor loses a
decision (stored first, delivered when it is back). Also the webhook target of the same outbox."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

pytest.importorskip("paho.mqtt")
pytest.importorskip("fastapi")
import paho.mqtt.client as mqtt  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from atalaia.serve.app import ServeConfig, create_app  # noqa: E402

PW, TOKEN = "correct horse battery", "door-token-for-tests"


def chips(face_data, ident: int) -> list:
    return sorted((face_data["chipset"] / "chips112" / f"{ident:05d}").glob("*.jpg"))


def _files(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


class Listener:
    """A persistent QoS 1 subscriber (clean_session False): the broker queues for it while it is away."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.msgs: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="atalaia-test-listener", clean_session=False)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, *a: [c.subscribe(t, qos=1) for t in topics]
        self.c.reconnect_delay_set(1, 1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on(self, client, userdata, msg) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = {"raw": msg.payload.decode(errors="replace")}  # the malformed device message the test sends
        with self.lock:
            self.msgs.append((msg.topic, doc if isinstance(doc, dict) else {"raw": doc}, bool(msg.retain)))

    def wait(self, pred, timeout: float = 20.0) -> list:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self.lock:
                got = [m for m in self.msgs if _safe(pred, m)]
            if got:
                return got
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f"timed out; got {[m[0] for m in self.msgs]}")

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _safe(pred, m) -> bool:
    try:
        return bool(pred(m))
    except (KeyError, TypeError):
        return False


def _app(face_run, tmp_path, **kw) -> TestClient:
    cfg = ServeConfig(run_dir=face_run, db=f"sqlite:///{tmp_path / 'm.db'}", door="front", threshold="0.85",
                      aligned=True, admin_password=PW, door_token=TOKEN, notify_backoff_s=1.0,
                      recognise_rate=100, recognise_burst=100, **kw)
    return TestClient(create_app(cfg))


def _enrol(c: TestClient, face_data) -> None:
    h = {"X-CSRF-Token": c.post("/api/login", json={"password": PW}).json()["csrf"]}
    assert c.post("/api/people", data={"name": "ann"}, files=_files(chips(face_data, 2)[:3]), headers=h).status_code == 201


def test_event_state_discovery_and_device_ingest(face_data, face_run, tmp_path, broker):
    listener = Listener(broker.port, ["atalaia/#", "homeassistant/#"])
    try:
        with _app(face_run, tmp_path, mqtt_url=broker.url) as c:  # `with`: the app's lifespan starts the notifier
            _enrol(c, face_data)
            cfg_msg = listener.wait(lambda m: m[0] == "homeassistant/sensor/atalaia_front/config")[0][1]
            assert cfg_msg["state_topic"] == "atalaia/front/state" and cfg_msg["unique_id"] == "atalaia_front"
            d = c.post("/api/recognize", files=_files(chips(face_data, 2)[3:4]), headers={"X-Door-Token": TOKEN}).json()
            ev = listener.wait(lambda m: m[0] == "atalaia/front/event" and m[1]["event_id"] == d["event_id"])[0][1]
            assert ev["granted"] is True and ev["person"] == "ann" and ev["score"] == pytest.approx(d["score"], abs=1e-4)
            assert "embedding" not in json.dumps(ev)
            st = listener.wait(lambda m: m[0] == "atalaia/front/state" and m[1]["event_id"] == d["event_id"])
            assert st[0][1]["granted"] is True
            # a late subscriber still gets the retained state
            late = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="late")
            got = []
            late.on_message = lambda cl, u, m: got.append((m.topic, m.retain))
            late.connect("127.0.0.1", broker.port)
            late.subscribe("atalaia/front/state", qos=1)
            late.loop_start()
            t0 = time.monotonic()
            while not got and time.monotonic() - t0 < 10:
                time.sleep(0.05)
            late.loop_stop()
            assert got and got[0] == ("atalaia/front/state", True)
            # a decision made on the MCU
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="esp32-front")
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            pub.publish("atalaia/front/device", json.dumps({"granted": False, "person": "ann", "score": 0.41,
                                                            "threshold": 0.65}), qos=1).wait_for_publish(5)
            pub.publish("atalaia/front/device", b"not json", qos=1).wait_for_publish(5)  # ignored, logged
            pub.loop_stop()
            dev = listener.wait(lambda m: m[0] == "atalaia/front/event" and m[1]["source"] == "device")[0][1]
            assert dev["granted"] is False and dev["score"] == 0.41
            total, rows = c.app.state.store.events(kind="check")
            assert total == 2 and rows[0]["source"] == "device" and rows[0]["door"] == "front"
            assert c.get("/api/health").json()["mqtt_connected"] is True
    finally:
        listener.close()


def test_broker_down_never_blocks_or_loses_a_decision(face_data, face_run, tmp_path, broker):
    listener = Listener(broker.port, ["atalaia/front/event"])
    try:
        with _app(face_run, tmp_path, mqtt_url=broker.url) as c:
            _enrol(c, face_data)
            store = c.app.state.store
            d0 = c.post("/api/recognize", files=_files(chips(face_data, 2)[3:4]), headers={"X-Door-Token": TOKEN}).json()
            listener.wait(lambda m: m[1]["event_id"] == d0["event_id"])
            broker.stop()  # mid-run
            ids, slowest = [], 0.0
            for p in chips(face_data, 2)[3:6]:
                t0 = time.monotonic()
                r = c.post("/api/recognize", files=_files([p]), headers={"X-Door-Token": TOKEN})
                slowest = max(slowest, time.monotonic() - t0)
                assert r.status_code == 200
                ids.append(r.json()["event_id"])
            assert slowest < 2.0  # the door answered without waiting for the broker
            assert {e["id"] for e in store.events(kind="check")[1]} >= set(ids)  # stored
            time.sleep(1.5)
            assert store.outbox_counts().get("mqtt") == 3  # queued, not lost
            broker.start()  # back, same port and persistent state
            for i in ids:  # every decision made while the broker was down arrives, in order
                listener.wait(lambda m, i=i: m[1]["event_id"] == i, timeout=30)
            with listener.lock:
                order = [m[1]["event_id"] for m in listener.msgs if m[1]["event_id"] in ids]
            assert order[:3] == ids
            t0 = time.monotonic()
            while store.outbox_counts().get("mqtt") and time.monotonic() - t0 < 10:
                time.sleep(0.1)
            assert store.outbox_counts() == {}
    finally:
        listener.close()


def test_webhook_down_then_up(face_data, face_run, tmp_path):
    """The webhook target: refused while the receiver is down, delivered with retries once it is up."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    posted: list[dict] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            posted.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    with _app(face_run, tmp_path, webhook_url=f"http://127.0.0.1:{port}/hook") as c:
        _enrol(c, face_data)
        d = c.post("/api/recognize", files=_files(chips(face_data, 2)[3:4]), headers={"X-Door-Token": TOKEN}).json()
        time.sleep(1.0)
        assert posted == [] and c.app.state.store.outbox_counts() == {"webhook": 1}  # nobody listening yet
        srv = HTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            t0 = time.monotonic()
            while not posted and time.monotonic() - t0 < 15:
                time.sleep(0.1)
            assert posted and posted[0]["event_id"] == d["event_id"] and posted[0]["granted"] is True
        finally:
            srv.shutdown()

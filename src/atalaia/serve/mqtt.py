"""Deliver door events to MQTT (Home Assistant convention) and a webhook, from the store's outbox.

Why an outbox: a decision is written to the store together with its pending notifications in one transaction
(`Store.add_event`), and a background thread delivers them. A broker or webhook that is down never blocks a
door (the request only writes the database) and never loses a decision (the rows stay until delivered; the
thread retries each target with exponential backoff, capped at `max_backoff_s`, oldest first). The queue is bounded: past
`max_pending` undelivered notifications per target the oldest are marked dropped (the events themselves stay
in the log).

Topics, for a door named D:
- `atalaia/D/event`: every decision, JSON (QoS 1);
- `atalaia/D/state`: the last decision, retained (what Home Assistant shows);
- `homeassistant/sensor/atalaia_D/config`: MQTT discovery (retained), so the door appears as a sensor;
- `atalaia/D/device` (subscribed, any door): decisions made on the MCU by the exported firmware's module,
  JSON `{"granted": bool, "person": str|null, "score": float, "threshold": float}`; logged like local ones
  (source "device") and published on the door's event/state topics.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from atalaia.errors import AtalaiaError
from atalaia.serve.store import Store

log = logging.getLogger("atalaia.serve")
TOPIC_ROOT = "atalaia"


def outbox_entries(payload: dict[str, Any], *, mqtt: bool, webhook: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """The notifications one event queues: (target, topic base, payload)."""
    door = str(payload.get("door") or "door")
    out: list[tuple[str, str, dict[str, Any]]] = []
    if mqtt:
        out.append(("mqtt", f"{TOPIC_ROOT}/{door}", payload))
    if webhook:
        out.append(("webhook", "", payload))
    return out


def discovery_config(door: str) -> tuple[str, dict[str, Any]]:
    """Home Assistant MQTT discovery: the door as a sensor whose state is granted/refused, attributes = event."""
    uid = f"atalaia_{door}"
    return f"homeassistant/sensor/{uid}/config", {
        "name": f"AtalaIA {door}", "unique_id": uid, "object_id": uid,
        "state_topic": f"{TOPIC_ROOT}/{door}/state",
        "value_template": "{{ 'granted' if value_json.granted else 'refused' }}",
        "json_attributes_topic": f"{TOPIC_ROOT}/{door}/state", "icon": "mdi:door",
        "device": {"identifiers": [uid], "name": f"AtalaIA door {door}", "manufacturer": "AtalaIA"}}


@dataclass(frozen=True)
class NotifierConfig:
    mqtt_url: str | None = None
    webhook_url: str | None = None
    doors: tuple[str, ...] = ("door",)
    poll_s: float = 0.2
    max_backoff_s: float = 60.0
    max_pending: int = 10_000
    timeout_s: float = 5.0


class Notifier:
    """Background delivery of the outbox (and ingestion of device decisions). `start()` / `stop()`."""

    def __init__(self, store: Store, cfg: NotifierConfig, ingest: Any = None) -> None:
        """ingest(door, payload dict) logs a device decision (the service passes its AccessControl-backed
        function); None ignores the device topic."""
        self.store, self.cfg, self.ingest = store, cfg, ingest
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._retry_at: dict[str, float] = {}
        self._fails: dict[str, int] = {}
        self.connected = threading.Event()
        if cfg.mqtt_url:
            u = urlparse(cfg.mqtt_url)
            if u.scheme not in ("mqtt", "tcp") or not u.hostname:
                raise AtalaiaError(f"--mqtt must be mqtt://[USER:PW@]HOST[:PORT], got '{cfg.mqtt_url}'")
            self._mqtt_addr = (u.hostname, u.port or 1883, u.username, u.password)

    # ------------------------------------------------------------------------------------------ MQTT client
    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        host, port, user, pw = self._mqtt_addr
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"atalaia-{'-'.join(self.cfg.doors)}"[:64])
        if user:
            c.username_pw_set(user, pw)
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(self.cfg.max_backoff_s)))
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a, **k: self.connected.clear()
        c.on_message = self._on_message
        c.connect_async(host, port, keepalive=30)
        c.loop_start()  # paho's thread reconnects by itself
        return c

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT connect refused: %s", reason_code)
            return
        for door in self.cfg.doors:
            topic, cfg = discovery_config(door)
            client.publish(topic, json.dumps(cfg), qos=1, retain=True)
        client.subscribe(f"{TOPIC_ROOT}/+/device", qos=1)
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if self.ingest is None or len(parts) != 3 or parts[2] != "device":
            return
        try:
            doc = json.loads(msg.payload.decode("utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("granted"), bool):
                raise ValueError("needs a JSON object with a boolean 'granted'")
            self.ingest(parts[1], doc)
        except (ValueError, UnicodeDecodeError, AtalaiaError) as e:
            log.warning("ignored a device message on %s: %s", msg.topic, e)

    def _publish(self, base: str, payload: str) -> None:
        import paho.mqtt.client as mqtt

        if not self.connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")
        for topic, retain in ((f"{base}/event", False), (f"{base}/state", True)):
            info = self._client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")
            info.wait_for_publish(timeout=self.cfg.timeout_s)  # PUBACK received
            if not info.is_published():
                raise ConnectionError("no PUBACK from the broker")

    def _post(self, payload: str) -> None:
        req = urllib.request.Request(str(self.cfg.webhook_url), data=payload.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as r:  # noqa: S310 - the admin's URL
            if r.status >= 300:
                raise ConnectionError(f"webhook answered {r.status}")

    # ------------------------------------------------------------------------------------------ loop
    def deliver_once(self) -> int:
        """Deliver what is due now, oldest first; returns how many notifications went out. A target that fails
        is backed off as a whole (in order: a later event never overtakes an earlier one)."""
        sent = 0
        now = time.monotonic()
        for target, enabled, send in (("mqtt", bool(self.cfg.mqtt_url), self._publish),
                                      ("webhook", bool(self.cfg.webhook_url), lambda _t, p: self._post(p))):
            if not enabled or now < self._retry_at.get(target, 0.0):
                continue
            for oid, topic, payload, _attempts in self.store.pending(target):
                try:
                    send(topic, payload)
                except (OSError, ConnectionError, urllib.error.URLError, ValueError) as e:
                    fails = self._fails.get(target, 0) + 1
                    self._fails[target] = fails
                    self._retry_at[target] = now + min(self.cfg.max_backoff_s, 0.25 * 2**fails)
                    self.store.retry_later(oid, str(e), 0.0)  # counts the attempt, keeps it due
                    break
                self._fails[target] = 0
                self.store.delivered(oid)
                sent += 1
        return sent

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.trim_outbox(self.cfg.max_pending)
                self.deliver_once()
            except Exception:  # never let the delivery thread die
                log.exception("outbox delivery failed; retrying")
            self._stop.wait(self.cfg.poll_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Notifier:
        if self.cfg.mqtt_url:
            self._client = self._make_client()
        self._thread = threading.Thread(target=self._run, name="atalaia-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()


__all__ = ["Notifier", "NotifierConfig", "discovery_config", "outbox_entries"]

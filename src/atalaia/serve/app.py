"""`atalaia serve`: the door-access web service (FastAPI) around one face run's int8 model.

Every decision goes through `atalaia.face.access.AccessControl` (one implementation of the rule: 1-NN cosine
over the enrolled templates against the calibrated threshold; a burst of frames is granted when a majority
of its frames is granted as the same person). The model is loaded once per process; requests run in FastAPI's thread pool and the access core
serialises inference and gallery reloads with its locks.

Security, in one place:
- admin endpoints (enrol, delete, people, log, CSV, event images) need a session: `POST /api/login` sets an
  HttpOnly, SameSite=Strict cookie, and every state-changing request with that cookie must echo the session's
  CSRF token in `X-CSRF-Token` (double submit against the server-side copy). API clients may instead send
  `Authorization: Bearer <session token>` (returned by login), which a browser never attaches by itself, so
  it needs no CSRF token;
- recognise needs the door token (`X-Door-Token`) or an admin session; both it and login are rate limited per
  client address;
- uploads: at most `max_upload_bytes` per file and `max_files` per request, images at most `max_side` pixels
  a side (checked from the header before decoding), everything else is a 4xx JSON `{"error": ...}`;
- no request ever names a file on disk: uploads are decoded from memory, photos (only with --keep-photos) go
  into the database, and the page is a package resource.
"""

# no `from __future__ import annotations`: FastAPI reads the route functions' annotations (Request, UploadFile,
# imported lazily inside create_app) at definition time
import copy
import csv
import dataclasses
import hmac
import io
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from atalaia.errors import AtalaiaError, DataError
from atalaia.face.access import AccessControl, event_payload
from atalaia.serve.auth import RateLimiter, hash_password, new_token, token_hash, verify_password
from atalaia.serve.mqtt import Notifier, NotifierConfig, outbox_entries
from atalaia.serve.store import EVENT_COLUMNS, open_store

log = logging.getLogger("atalaia.serve")
COOKIE = "atalaia_session"
SESSION_S = 8 * 3600


@dataclass(frozen=True)
class ServeConfig:
    """What `atalaia serve` is started with. Tokens and the admin password are set in the store on start
    (only hashes are kept); None keeps what the store already has."""

    run_dir: Path
    db: str | None = None
    door: str = "door"
    threshold: str = "open_far_1e-2"
    aligned: bool = False
    detector: Path | None = None  # a detection run: uploads are camera frames through the int8 detector
    runtime: str = "litert"
    keep_photos: bool = False
    mqtt_url: str | None = None
    webhook_url: str | None = None
    notify_backoff_s: float = 60.0  # longest wait between delivery retries (MQTT reconnects, webhook posts)
    admin_password: str | None = None
    door_token: str | None = None
    max_upload_bytes: int = 4 << 20
    max_files: int = 10
    max_side: int = 4096
    recognise_rate: float = 5.0  # per second per client, bursts of recognise_burst
    recognise_burst: int = 20
    login_rate: float = 0.2  # one attempt per 5 s on average, bursts of 5
    login_burst: int = 5
    secure_cookie: bool = False  # set behind HTTPS
    extra_doors: tuple[str, ...] = field(default_factory=tuple)


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def model_card(run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """The numbers the run measured for its int8 model, from report.json (None where the run has none)."""
    rep = _run_report(run_dir)
    stages = {s.get("stage"): s for s in rep.get("stages", []) if isinstance(s, dict)}
    st = stages.get("int8_litert") or {}
    ver = (rep.get("verification") or {}).get("models", {})
    v = ver.get("int8_litert") or {}
    vt = ver.get("int8_tflm") or {}
    return {
        "recipe": rep.get("recipe_name"), "created": rep.get("created"), "model": st.get("model"),
        "dtype": st.get("dtype"), "params": st.get("params"), "macs_per_inference": st.get("macs"),
        "inferences_per_face": 2 if facts.get("mirror_tta") else 1,
        "flash_bytes": st.get("flash_bytes"), "arena_bytes": st.get("arena_bytes"),
        "est_latency_ms": st.get("est_latency_ms") or {}, "host_latency_ms": st.get("host_latency_ms"),
        "lfw_accuracy": v.get("acc_mean"), "lfw_accuracy_std": v.get("acc_std"), "auc": v.get("auc"),
        "tar_at_far_1e-2": v.get("tar_at_far_0.01"), "tar_at_far_1e-3": v.get("tar_at_far_0.001"),
        "lfw_accuracy_tflm": vt.get("acc_mean"),
        "input": {"size": facts.get("input_size"), "crop": facts.get("crop"), "grey": facts.get("grey")},
        "notes": "est. latency is an estimate from MACs (atalaia targets), not measured on a device; flash is "
                 "the .tflite as flashed; accuracies are LFW 10-fold, measured by the run",
    }


def _run_report(run_dir: Path) -> dict[str, Any]:
    """The one read of the run's report (switched to RunFolder at merge); {} when there is none."""
    p = run_dir / "report.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except json.JSONDecodeError:
        log.warning("%s is not JSON: the model card is empty", p)
        return {}


def _check_image(data: bytes, label: str, cfg: ServeConfig) -> None:
    """Size, type and dimension limits before any decoding (a decompression bomb never gets decoded)."""
    if len(data) > cfg.max_upload_bytes:
        raise ApiError(413, f"{label} is {len(data)} bytes, over the {cfg.max_upload_bytes}-byte limit")
    if not data:
        raise ApiError(400, f"{label} is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            fmt = im.format
    except (UnidentifiedImageError, OSError, ValueError):
        raise ApiError(415, f"{label} is not an image (JPEG, PNG, WebP, BMP expected)") from None
    if fmt not in ("JPEG", "PNG", "WEBP", "BMP", "PPM", "GIF"):
        raise ApiError(415, f"{label} is a {fmt} image: send JPEG, PNG, WebP or BMP")
    if max(w, h) > cfg.max_side:
        raise ApiError(413, f"{label} is {w}x{h}: at most {cfg.max_side} pixels a side")


def create_app(cfg: ServeConfig, *, start_notifier: bool = True) -> Any:
    """The ASGI app. Loads the model and opens the store once."""
    from fastapi import FastAPI, File, Form, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    store = open_store(cfg.db, Path(cfg.run_dir) / "access")
    doors = (cfg.door, *cfg.extra_doors)
    mqtt_on, hook_on = bool(cfg.mqtt_url), bool(cfg.webhook_url)

    def outbox(payload: dict[str, Any]) -> list:
        return outbox_entries(payload, mqtt=mqtt_on, webhook=hook_on)

    ac = AccessControl(cfg.run_dir, store=store, threshold=cfg.threshold, aligned=cfg.aligned, door=cfg.door,
                       runtime=cfg.runtime, outbox=outbox, state_dir=Path(cfg.run_dir) / "access",
                       detector=cfg.detector)
    if cfg.admin_password:
        store.set_admin("admin", hash_password(cfg.admin_password))
    if cfg.door_token:
        for d in doors:
            store.set_door(d, token_hash(cfg.door_token))
    if store.admin_hash("admin") is None:
        raise AtalaiaError("no admin password in the store: start once with --admin-password-file FILE or "
                           "ATALAIA_ADMIN_PASSWORD set")
    card = model_card(Path(cfg.run_dir), ac.facts)
    login_limit = RateLimiter(cfg.login_rate, cfg.login_burst)
    recog_limit = RateLimiter(cfg.recognise_rate, cfg.recognise_burst)

    def ingest_device(door: str, doc: dict[str, Any]) -> None:
        """A decision made on the MCU: logged like a local one (source 'device') and published."""
        score = doc.get("score")
        ev = {"door": door, "kind": "check", "source": "device", "granted": bool(doc["granted"]),
              "person": str(doc["person"])[:200] if doc.get("person") else None,
              "score": float(score) if isinstance(score, int | float) else None,
              "threshold": float(doc["threshold"]) if isinstance(doc.get("threshold"), int | float) else None,
              "far": "device", "frames": 1, "reason": str(doc.get("reason") or "decided on the device")[:200]}
        store.add_event(ev, outbox_entries(event_payload(ev, door), mqtt=mqtt_on, webhook=hook_on))

    notifier = Notifier(store, NotifierConfig(mqtt_url=cfg.mqtt_url, webhook_url=cfg.webhook_url, doors=doors,
                                                max_backoff_s=cfg.notify_backoff_s),
                        ingest=ingest_device)

    @asynccontextmanager
    async def lifespan(_app: Any):
        if start_notifier and (mqtt_on or hook_on):
            notifier.start()
        yield
        if notifier.running:
            notifier.stop()

    app = FastAPI(title="AtalaIA door access", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.access, app.state.store, app.state.notifier, app.state.cfg = ac, store, notifier, cfg

    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, e: ApiError) -> JSONResponse:
        headers = {"Retry-After": str(int(e.extra.pop("retry_after")) + 1)} if "retry_after" in e.extra else None
        return JSONResponse({"error": e.message, **e.extra}, status_code=e.status, headers=headers)

    @app.exception_handler(AtalaiaError)
    async def _user_error(_req: Request, e: AtalaiaError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, e: RequestValidationError) -> JSONResponse:
        errs = "; ".join(f"{'.'.join(str(x) for x in er.get('loc', ()))}: {er.get('msg')}" for er in e.errors())
        return JSONResponse({"error": f"bad request: {errs}"}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        limit = cfg.max_upload_bytes * cfg.max_files + (64 << 10)
        if int(request.headers.get("content-length") or 0) > limit:
            return JSONResponse({"error": f"request body over {limit} bytes"}, status_code=413)
        resp = await call_next(request)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Content-Security-Policy"] = ("default-src 'self'; img-src 'self' blob: data:; "
                                                   "media-src 'self' blob:; style-src 'self' 'unsafe-inline'")
        return resp

    # ------------------------------------------------------------------------------------------ auth helpers
    def client_key(request: Request) -> str:
        return request.client.host if request.client else "?"

    def admin(request: Request, *, csrf: bool) -> str:
        """The admin name of a valid session (cookie + CSRF header for writes, or a bearer token)."""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            s = store.session(token_hash(auth[7:].strip()))
            if s is None:
                raise ApiError(401, "invalid or expired bearer token: log in again")
            return s[0]
        tok = request.cookies.get(COOKIE)
        s = store.session(token_hash(tok)) if tok else None
        if s is None:
            raise ApiError(401, "log in as admin first")
        if csrf:
            sent = request.headers.get("x-csrf-token", "")
            if not sent or not hmac.compare_digest(sent, s[1]):
                raise ApiError(403, "missing or wrong X-CSRF-Token header (CSRF protection): reload the page")
        return s[0]

    def door_allowed(request: Request, door: str) -> None:
        tok = request.headers.get("x-door-token")
        if tok:
            want = store.door_hash(door)
            if want is None or not hmac.compare_digest(want, token_hash(tok)):
                raise ApiError(401, f"wrong door token for door '{door}'")
            return
        admin(request, csrf=True)

    async def read_files(files: list[UploadFile], what: str) -> list[bytes]:
        if not files:
            raise ApiError(400, f"send at least one image as '{what}'")
        if len(files) > cfg.max_files:
            raise ApiError(413, f"at most {cfg.max_files} images per request, got {len(files)}")
        out = []
        for k, f in enumerate(files, 1):
            data = await f.read(cfg.max_upload_bytes + 1)
            _check_image(data, f"image {k}", cfg)
            out.append(data)
        return out

    # ------------------------------------------------------------------------------------------ page
    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        html = resources.files("atalaia.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/app.js")
    def script() -> Response:
        js = resources.files("atalaia.serve").joinpath("static/app.js").read_text(encoding="utf-8")
        return Response(js, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "door": cfg.door, "people": len(ac.people), "outbox_pending": store.outbox_counts(),
                "mqtt_connected": notifier.connected.is_set() if mqtt_on else None}

    @app.get("/api/model")
    def model() -> dict[str, Any]:
        return {**card, "threshold_rule": ac.threshold_rule, "threshold": ac.threshold,
                "stands_for": ac.stands_for, "warning": ac.warning, "runtime": cfg.runtime,
                "model_sha256": ac.model_sha256}

    # ------------------------------------------------------------------------------------------ sessions
    @app.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        key = client_key(request)
        if not login_limit.allow(key):
            raise ApiError(429, "too many login attempts: wait and try again",
                           retry_after=login_limit.retry_after(key))
        # JSON only: a cross-site HTML form cannot send application/json without a CORS preflight (which this
        # app never grants), so nobody can be logged in from another site (login CSRF)
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise ApiError(415, "log in with a JSON body {\"username\": ..., \"password\": ...}")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "login body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "login body must be a JSON object")
        user, pw = str(body.get("username") or "admin"), str(body.get("password") or "")
        if not verify_password(pw, store.admin_hash(user)):
            raise ApiError(401, "wrong user name or password")
        tok, csrf = new_token(), new_token()
        store.add_session(token_hash(tok), user, csrf, time.time() + SESSION_S)
        resp = JSONResponse({"admin": user, "csrf": csrf, "token": tok, "expires_in": SESSION_S})
        resp.set_cookie(COOKIE, tok, max_age=SESSION_S, httponly=True, samesite="strict", secure=cfg.secure_cookie,
                        path="/")
        return resp

    @app.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        admin(request, csrf=True)
        tok = request.cookies.get(COOKIE)
        if tok:
            store.drop_session(token_hash(tok))
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/api/me")
    def me(request: Request) -> dict[str, Any]:
        tok = request.cookies.get(COOKIE)
        s = store.session(token_hash(tok)) if tok else None
        if s is None:
            raise ApiError(401, "not logged in")
        return {"admin": s[0], "csrf": s[1], "door": cfg.door}

    # ------------------------------------------------------------------------------------------ people
    @app.get("/api/people")
    def people(request: Request) -> dict[str, Any]:
        admin(request, csrf=False)
        return {"people": [{"name": p.name, "templates": p.templates, "enrolled": p.created_at, "id": p.subject}
                           for p in store.people()]}

    @app.post("/api/people")
    async def enrol(request: Request, name: Annotated[str, Form()],
                    files: Annotated[list[UploadFile], File()]) -> JSONResponse:
        admin(request, csrf=True)
        name = name.strip()
        if not name or len(name) > 100 or any(c in name for c in "\r\n\t"):
            raise ApiError(400, "a name must be 1-100 characters on one line")
        data = await read_files(files, "files")

        def work() -> dict[str, Any]:
            probes, errors = [], []
            for k, d in enumerate(data, 1):
                try:
                    probes.append((k, ac.probe(d, f"image {k}"), d))
                except DataError as e:
                    errors.append(str(e))
            if not probes:
                raise ApiError(422, "no usable face in the images: " + "; ".join(errors))
            emb = ac.embed_inputs(np.stack([p.x for _, p, _ in probes]))
            photos = [d for _, _, d in probes] if cfg.keep_photos else None
            n = store.add_templates(name, np.round(emb, 6), photos, event={
                "door": cfg.door, "kind": "enrol", "source": "web",
                "reason": f"{len(probes)} template(s) added" + (f", {len(errors)} image(s) skipped" if errors else "")})
            notes = [f"image {k}: {p.faces} faces, the largest was used" for k, p, _ in probes if p.faces > 1]
            return {"name": name, "added": len(probes), "templates": n, "skipped": errors, "notes": notes,
                    "photos_kept": bool(cfg.keep_photos)}

        return JSONResponse(await run_in_threadpool(work), status_code=201)

    @app.delete("/api/people/{name}")
    def delete(request: Request, name: str) -> dict[str, Any]:
        admin(request, csrf=True)
        n = store.delete_person(name, event={"door": cfg.door, "kind": "remove", "source": "web"})
        if n == 0:
            raise ApiError(404, f"'{name}' is not enrolled")
        return {"name": name, "templates_deleted": n}

    # ------------------------------------------------------------------------------------------ recognise
    @app.post("/api/recognize")
    async def recognize(request: Request, files: Annotated[list[UploadFile], File()],
                        door: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        door = door or cfg.door
        if door not in doors:
            raise ApiError(404, f"unknown door '{door}' (this service: {', '.join(doors)})")
        door_allowed(request, door)
        key = f"{client_key(request)}/{door}"
        if not recog_limit.allow(key):
            raise ApiError(429, "too many recognition requests: slow down", retry_after=recog_limit.retry_after(key))
        data = await read_files(files, "files")

        def work() -> dict[str, Any]:
            if not ac.people:
                raise ApiError(409, "nobody is enrolled yet")
            probes, errors, used = [], [], []  # used: index in the upload of each probe's frame
            for k, d in enumerate(data, 1):
                try:
                    probes.append(ac.probe(d, f"frame {k}"))
                    used.append(k - 1)
                except DataError as e:
                    errors.append(str(e))
            if not probes:
                raise ApiError(422, "; ".join(errors), faces=0)
            emb = ac.embed_inputs(np.stack([p.x for p in probes]))
            faces = max(p.faces for p in probes)
            d = _door(ac, door).decide(emb, image=f"{len(data)} frame(s)", faces=faces,
                                       photo=data[0] if cfg.keep_photos else None, source="web")
            return {"granted": d.granted, "person": d.person, "score": round(d.score, 4),
                    "threshold": round(d.threshold, 4), "threshold_rule": ac.threshold_rule,
                    "stands_for": ac.stands_for, "frames": d.frames, "frames_skipped": errors, "faces": faces,
                    "note": f"{faces} faces in a frame: the largest was used" if faces > 1 else None,
                    "reason": d.reason, "event_id": d.event_id, "door": door,
                    "boxes": [list(np.round(p.box, 1)) for p in probes if p.box is not None] or None,
                    # which uploaded frame each box is in (frames without a face are skipped): the page draws it
                    "box_frames": [i for p, i in zip(probes, used, strict=True) if p.box is not None] or None,
                    "detector_scores": [round(p.det_score, 3) for p in probes if p.det_score is not None] or None}

        return await run_in_threadpool(work)

    # ------------------------------------------------------------------------------------------ log
    def _filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        granted = q.get("decision")
        if granted not in (None, "", "granted", "refused"):
            raise ApiError(400, "decision must be granted or refused")
        for k in ("since", "until"):
            v = q.get(k)
            if v and not (len(v) >= 10 and v[4] == "-" and v[7] == "-" and v[:4].isdigit()):
                raise ApiError(400, f"{k} must be a date YYYY-MM-DD (or an ISO time)")
        return {"person": q.get("person") or None, "kind": q.get("kind") or None, "door": q.get("door") or None,
                "granted": None if not granted else granted == "granted",
                "since": q.get("since") or None, "until": q.get("until") or None}

    @app.get("/api/events")
    def events(request: Request, page: int = 1, per_page: int = 25) -> dict[str, Any]:
        admin(request, csrf=False)
        if page < 1 or not 1 <= per_page <= 200:
            raise ApiError(400, "page >= 1 and 1 <= per_page <= 200")
        total, rows = store.events(**_filters(request), limit=per_page, offset=(page - 1) * per_page)
        return {"total": total, "page": page, "per_page": per_page, "events": rows}

    @app.get("/api/events.csv")
    def events_csv(request: Request) -> Response:
        admin(request, csrf=False)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(EVENT_COLUMNS)
        offset = 0
        while True:
            _, rows = store.events(**_filters(request), limit=1000, offset=offset)
            for r in rows:
                w.writerow([_csv_safe(r[c]) for c in EVENT_COLUMNS])
            if len(rows) < 1000:
                break
            offset += 1000
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="atalaia_events.csv"'})

    @app.get("/api/events/{event_id}/image")
    def event_image(request: Request, event_id: int) -> Response:
        admin(request, csrf=False)
        img = store.event_image(event_id)
        if img is None:
            raise ApiError(404, "no image kept for this event (photos are kept only with --keep-photos)")
        return Response(img, media_type="application/octet-stream",
                        headers={"Content-Disposition": f'attachment; filename="event_{event_id}.img"'})

    return app


def first_start_secrets(cfg: ServeConfig) -> tuple[ServeConfig, list[str]]:
    """On a store without an admin password or a door token (and none given), make random ones and say them
    once: the service never runs open, and nothing secret is written anywhere but as a hash."""
    store = open_store(cfg.db, Path(cfg.run_dir) / "access")
    msgs = []
    try:
        if not cfg.admin_password and store.admin_hash("admin") is None:
            cfg = dataclasses.replace(cfg, admin_password=new_token()[:20])
            msgs.append(f"admin password (shown once; set your own with ATALAIA_ADMIN_PASSWORD): {cfg.admin_password}")
        if not cfg.door_token and any(store.door_hash(d) is None for d in (cfg.door, *cfg.extra_doors)):
            cfg = dataclasses.replace(cfg, door_token=new_token())
            msgs.append(f"door token for X-Door-Token (shown once; set your own with ATALAIA_DOOR_TOKEN): "
                        f"{cfg.door_token}")
    finally:
        store.close()
    return cfg, msgs


def run_server(cfg: ServeConfig, host: str, port: int) -> None:
    """`atalaia serve`: one uvicorn process (the model is loaded once; requests share it through the core)."""
    try:
        import uvicorn
    except ImportError:
        raise AtalaiaError("atalaia serve needs the service extras: pip install 'atalaia[serve]'") from None
    app = create_app(cfg)
    uvicorn.run(app, host=host, port=port, workers=1, log_level="warning", proxy_headers=False)


_doors: dict[tuple[int, str], Any] = {}


def _door(ac: Any, door: str) -> Any:
    """The access core logging under another door name (same model, gallery and store: several doors)."""
    if door == ac.door:
        return ac
    key = (id(ac), door)
    if key not in _doors:
        other = copy.copy(ac)
        other.door = door
        _doors[key] = other
    return _doors[key]


def _csv_safe(v: Any) -> Any:
    """No spreadsheet formula injection through a name typed at enrolment."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return "" if v is None else v


__all__ = ["ApiError", "ServeConfig", "create_app", "first_start_secrets", "model_card", "run_server"]

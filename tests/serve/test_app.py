"""The door-access API with FastAPI's test client, on SQLite and PostgreSQL: login, CSRF, door token, enrol,
recognise (single frame and burst, through the access core), log, CSV, delete (biometric data gone), limits.

The fixture model is a random-weight int8 student on generated grating chips (no real faces: dlib finds none,
so the service runs in the core's `aligned` mode). With a fixed seed it separates identities 2 and 3 from 0
well enough for a threshold of 0.85 (genuine >= 0.898 on the probes used, strangers <= 0.746)."""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from atalaia.errors import AtalaiaError  # noqa: E402
from atalaia.serve.app import ServeConfig, create_app  # noqa: E402

PW = "correct horse battery"
TOKEN = "door-token-for-tests"
ANN, BOB, STRANGER = 2, 3, 0


def chips(face_data, ident: int) -> list:
    return sorted((face_data["chipset"] / "chips112" / f"{ident:05d}").glob("*.jpg"))


def _client(face_run, db_url, **kw) -> TestClient:
    cfg = ServeConfig(run_dir=face_run, db=db_url, door="front", threshold="0.85", aligned=True,
                      admin_password=PW, door_token=TOKEN, **kw)
    return TestClient(create_app(cfg))


def _login(c: TestClient) -> dict:
    r = c.post("/api/login", json={"username": "admin", "password": PW})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf"]}


def _files(paths) -> list:
    return [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]


def test_enrol_recognise_log_delete(face_data, face_run, db_url):
    c = _client(face_run, db_url, keep_photos=True)
    h = _login(c)
    ck = c.cookies
    assert c.get("/api/me").json()["csrf"] == h["X-CSRF-Token"] and ck.get("atalaia_session")
    r = c.post("/api/people", data={"name": "ann"}, files=_files(chips(face_data, ANN)[:3]), headers=h)
    assert r.status_code == 201 and r.json()["templates"] == 3, r.text
    r = c.post("/api/people", data={"name": "bob"}, files=_files(chips(face_data, BOB)[:3]), headers=h)
    assert r.status_code == 201
    assert [(p["name"], p["templates"]) for p in c.get("/api/people").json()["people"]] == [("ann", 3), ("bob", 3)]

    # one frame, decided by the access core's rule (same score as the core computes)
    ac = c.app.state.access
    probe = chips(face_data, ANN)[3]
    d = c.post("/api/recognize", files=_files([probe]), headers={"X-Door-Token": TOKEN}).json()
    e, _ = ac.embed([probe])
    person, score, th = ac.match(e[0])
    assert (d["granted"], d["person"], d["threshold"]) == (True, "ann", 0.85) and person == "ann"
    assert d["score"] == pytest.approx(score, abs=1e-4) and "fixed cosine" in d["stands_for"]
    # a burst of three frames: the core's majority vote over the single-frame rule
    burst = chips(face_data, ANN)[3:6]
    d = c.post("/api/recognize", files=_files(burst), headers={"X-Door-Token": TOKEN}).json()
    from atalaia.face.access import majority

    e, _ = ac.embed(burst)
    want = majority([ac.match(x) for x in e])
    assert d["granted"] and want[:3] == ("ann", pytest.approx(d["score"], abs=1e-4), True) and d["frames"] == 3
    assert d["reason"] == "3 of 3 frames matched the best person"
    d = c.post("/api/recognize", files=_files(chips(face_data, STRANGER)[3:6]), headers=h).json()
    assert d["granted"] is False  # a stranger, with the admin session instead of the door token

    ev = c.get("/api/events", params={"person": "ann", "decision": "granted", "per_page": 1}).json()
    assert ev["total"] == 2 and len(ev["events"]) == 1 and ev["events"][0]["frames"] == 3  # newest first
    assert c.get("/api/events", params={"decision": "refused"}).json()["total"] == 1
    assert c.get("/api/events", params={"until": "2000-01-01"}).json()["total"] == 0
    rows = list(csv.DictReader(io.StringIO(c.get("/api/events.csv").text)))
    assert len(rows) == 5 and {r["kind"] for r in rows} == {"enrol", "check"}
    ann_event = next(x for x in ev["events"])
    assert ann_event["has_image"] and c.get(f"/api/events/{ann_event['id']}/image").content == burst[0].read_bytes()

    # delete: templates, photos, names and images on events all go; the rows keep the pseudonym
    store = c.app.state.store
    subject = store.subject_of("ann")
    assert store.photos_of("ann") == 3
    n_ann = c.get("/api/events", params={"person": "ann"}).json()["total"]
    assert c.delete("/api/people/ann", headers=h).json()["templates_deleted"] == 3
    assert store.biometric_rows("ann", subject) == {"people": 0, "templates": 0, "events_with_name": 0,
                                                    "event_images": 0, "outbox_with_name": 0}
    assert "ann" not in c.get("/api/events.csv").text
    assert c.get("/api/events", params={"person": subject}).json()["total"] == n_ann + 1  # + the removal
    assert c.get(f"/api/events/{ann_event['id']}/image").status_code == 404
    assert c.delete("/api/people/ann", headers=h).status_code == 404
    names, _ = store.gallery()
    assert names == ["bob"] * 3


def test_security_checks(face_data, face_run, tmp_path):
    db = f"sqlite:///{tmp_path / 'a.db'}"
    c = _client(face_run, db, login_burst=3)
    img = chips(face_data, ANN)[0]
    # admin endpoints need a session; recognise needs the door token or a session
    assert c.get("/api/people").status_code == 401 and c.get("/api/events.csv").status_code == 401
    assert c.post("/api/people", data={"name": "x"}, files=_files([img])).status_code == 401
    assert c.post("/api/recognize", files=_files([img])).status_code == 401
    assert c.post("/api/recognize", files=_files([img]), headers={"X-Door-Token": "wrong"}).status_code == 401
    # wrong passwords, then the login rate limit
    codes = [c.post("/api/login", json={"password": "nope-nope"}).status_code for _ in range(4)]
    assert codes[:3] == [401] * 3 and codes[3] == 429
    c2 = _client(face_run, db, max_side=1000)
    h = _login(c2)
    # login CSRF: a cross-site form post cannot log anyone in
    assert c2.post("/api/login", data={"password": PW}).status_code == 415
    # CSRF: the cookie alone cannot change anything
    assert c2.post("/api/people", data={"name": "x"}, files=_files([img])).status_code == 403
    assert c2.delete("/api/people/x", headers={"X-CSRF-Token": "forged"}).status_code == 403
    # a bearer token (an API client) needs no CSRF header, and no cookie
    tok = TestClient(c2.app).post("/api/login", json={"password": PW}).json()["token"]
    api = TestClient(c2.app)
    assert api.get("/api/people", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
    assert api.get("/api/people", headers={"Authorization": "Bearer forged"}).status_code == 401
    # uploads: not an image, too big, too large in pixels, empty
    r = c2.post("/api/people", data={"name": "x"}, files=[("files", ("a.jpg", b"%PDF-1.4 not an image", "image/jpeg"))],
                headers=h)
    assert r.status_code == 415 and "not an image" in r.json()["error"]
    from PIL import Image

    big = io.BytesIO()
    Image.fromarray(np.zeros((1200, 50), np.uint8)).save(big, "PNG")
    r = c2.post("/api/people", data={"name": "x"}, files=[("files", ("b.png", big.getvalue(), "image/png"))], headers=h)
    assert r.status_code == 413 and "1200" in r.json()["error"]
    r = c2.post("/api/people", data={"name": "x"}, files=[("files", ("c.jpg", b"", "image/jpeg"))], headers=h)
    assert r.status_code == 400
    huge = _client(face_run, db, max_upload_bytes=1000)
    hh = _login(huge)
    r = huge.post("/api/people", data={"name": "x"}, files=_files([img]), headers=hh)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert c2.post("/api/people", data={"name": "\n"}, files=_files([img]), headers=h).status_code == 400
    assert c2.get("/api/events", params={"since": "yesterday"}).status_code == 400
    assert c2.get("/api/events", params={"decision": "maybe"}).status_code == 400
    # nobody enrolled yet -> a clear 409; a name with a formula is neutralised in the CSV
    assert c2.post("/api/recognize", files=_files([img]), headers=h).status_code == 409
    c2.post("/api/people", data={"name": "=HYPERLINK(1)"}, files=_files([img]), headers=h)
    assert "'=HYPERLINK(1)" in c2.get("/api/events.csv").text
    # no path from a request reaches the disk: a traversal name is just a (missing) person
    assert c2.delete("/api/people/..%2F..%2Fetc%2Fpasswd", headers=h).status_code == 404
    assert c2.get("/static/../../pyproject.toml").status_code == 404
    # recognise rate limit (per client and door)
    slow = _client(face_run, db, recognise_rate=0.01, recognise_burst=2)
    codes = [slow.post("/api/recognize", files=_files([img]), headers={"X-Door-Token": TOKEN}).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    # cookie flags
    r = c2.post("/api/login", json={"password": PW})
    sc = r.headers["set-cookie"].lower()
    assert "httponly" in sc and "samesite=strict" in sc
    assert r.headers["x-frame-options"] == "DENY" and "default-src 'self'" in r.headers["content-security-policy"]


def test_concurrent_recognition_is_consistent(face_data, face_run, tmp_path):
    """Many threads through one model: every answer equals the sequential one."""
    c = _client(face_run, f"sqlite:///{tmp_path / 'c.db'}", recognise_rate=1000, recognise_burst=1000)
    h = _login(c)
    c.post("/api/people", data={"name": "ann"}, files=_files(chips(face_data, ANN)[:3]), headers=h)
    c.post("/api/people", data={"name": "bob"}, files=_files(chips(face_data, BOB)[:3]), headers=h)
    probes = chips(face_data, ANN)[3:] + chips(face_data, BOB)[3:] + chips(face_data, STRANGER)
    seq = [c.post("/api/recognize", files=_files([p]), headers={"X-Door-Token": TOKEN}).json() for p in probes]

    def one(p):
        return c.post("/api/recognize", files=_files([p]), headers={"X-Door-Token": TOKEN}).json()

    with ThreadPoolExecutor(8) as pool:
        par = list(pool.map(one, probes * 4))
    key = [(d["person"], d["score"], d["granted"]) for d in seq]
    assert [(d["person"], d["score"], d["granted"]) for d in par] == key * 4
    assert c.get("/api/events", params={"kind": "check"}).json()["total"] == len(probes) * 5


def test_model_card_and_page(face_run, tmp_path):
    c = _client(face_run, f"sqlite:///{tmp_path / 'm.db'}")
    m = c.get("/api/model").json()
    assert m["lfw_accuracy"] == 0.61 and m["tar_at_far_1e-2"] == 0.3 and m["arena_bytes"] == 20480
    assert m["flash_bytes"] == (face_run / "int8_litert" / "model.tflite").stat().st_size
    assert m["est_latency_ms"] == {"esp32s3": 1.5} and "estimate" in m["notes"] and m["threshold"] == 0.85
    page = c.get("/")
    assert page.status_code == 200 and "getUserMedia" in c.get("/app.js").text and "<script" in page.text


def test_needs_an_admin_password(face_run, tmp_path):
    with pytest.raises(AtalaiaError, match="no admin password"):
        create_app(ServeConfig(run_dir=face_run, db=f"sqlite:///{tmp_path / 'n.db'}", aligned=True))
    with pytest.raises(AtalaiaError, match="at least 8"):
        create_app(ServeConfig(run_dir=face_run, db=f"sqlite:///{tmp_path / 'n.db'}", admin_password="short"))


def test_doors_share_one_gallery_and_a_second_process_sees_enrolments(face_data, face_run, db_url):
    """Two services (two doors, as two processes would be) on one database: enrol at one, recognised at the
    other, each event under its own door."""
    front = _client(face_run, db_url)
    back = TestClient(create_app(ServeConfig(run_dir=face_run, db=db_url, door="back", threshold="0.85",
                                             aligned=True, admin_password=PW, door_token=TOKEN)))
    h = _login(front)
    assert back.post("/api/recognize", files=_files(chips(face_data, ANN)[3:4]),
                     headers={"X-Door-Token": TOKEN}).status_code == 409  # nobody yet
    front.post("/api/people", data={"name": "ann"}, files=_files(chips(face_data, ANN)[:3]), headers=h)
    d = back.post("/api/recognize", files=_files(chips(face_data, ANN)[3:4]), headers={"X-Door-Token": TOKEN}).json()
    assert d["granted"] and d["person"] == "ann" and d["door"] == "back"
    assert front.get("/api/events", params={"door": "back"}).json()["total"] == 1
    store = front.app.state.store  # without --keep-photos no photo or frame is stored
    assert store.photos_of("ann") == 0 and not any(e["has_image"] for e in store.events(limit=100)[1])
    front.delete("/api/people/ann", headers=h)
    assert back.post("/api/recognize", files=_files(chips(face_data, ANN)[3:4]),
                     headers={"X-Door-Token": TOKEN}).status_code == 409  # the deletion reached the other door


def test_tflm_runtime_decides_like_litert(face_data, face_run, tmp_path):
    """--runtime tflm: the device's interpreter; embeddings within one output quantization step of LiteRT's."""
    pytest.importorskip("tflite_micro")
    from atalaia.face.access import AccessControl

    lite = AccessControl(face_run, state_dir=tmp_path / "a", aligned=True, threshold=0.85)
    tflm = AccessControl(face_run, state_dir=tmp_path / "b", aligned=True, threshold=0.85, runtime="tflm")
    x = np.stack([lite.probe(c).x for c in chips(face_data, ANN)])
    raw_l = lite._runner.predict(x)
    raw_t = tflm._runner.predict(x)
    step = lite._runner.output_scale
    assert np.max(np.abs(raw_l - raw_t)) <= step * 1.01
    for ac in (lite, tflm):
        ac.enrol("ann", chips(face_data, ANN)[:3])
    a, b = lite.check(chips(face_data, ANN)[4]), tflm.check(chips(face_data, ANN)[4])
    assert (a.person, a.granted) == (b.person, b.granted) and abs(a.score - b.score) < 0.02
    with pytest.raises(AtalaiaError, match="--runtime must be litert or tflm"):
        AccessControl(face_run, state_dir=tmp_path / "c", runtime="gpu")


LFW_CHIPS = next((p / "datasets" / "lfw" / "chips112_gray" for p in (Path(__file__).resolve().parents[3] / "shared",
                                                                     Path("/work/shared"))
                  if (p / "datasets" / "lfw" / "chips112_gray").is_dir()), None)


def _photo(faces: list[tuple[str, int, tuple[int, int]]]) -> bytes:
    """A grey 640x400 'photo' with LFW chips pasted at (size, position): real faces for dlib to find."""
    from PIL import Image

    canvas = Image.new("RGB", (640, 400), (90, 90, 90))
    for rel, size, pos in faces:
        canvas.paste(Image.open(LFW_CHIPS / rel).convert("RGB").resize((size, size)), pos)
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.skipif(LFW_CHIPS is None, reason="needs ../shared/datasets/lfw/chips112_gray")
def test_detection_path_no_face_and_several_faces(face_data, face_run, tmp_path):
    """Without --aligned every upload goes through dlib detection + alignment, as `atalaia align` does."""
    pytest.importorskip("dlib")
    cfg = ServeConfig(run_dir=face_run, db=f"sqlite:///{tmp_path / 'd.db'}", threshold="0.85",
                      admin_password=PW, door_token=TOKEN)
    c = TestClient(create_app(cfg))
    h = _login(c)
    a1, a2, b1 = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "AJ_Cook/AJ_Cook_0001.jpg", "AJ_Lamas/AJ_Lamas_0001.jpg"
    r = c.post("/api/people", data={"name": "aaron"}, headers=h,
               files=[("files", ("a.jpg", _photo([(a1, 260, (70, 70))]), "image/jpeg")),
                      ("files", ("g.jpg", chips(face_data, 0)[0].read_bytes(), "image/jpeg"))])
    assert r.status_code == 201 and r.json()["added"] == 1 and "no face found in image 2" in r.json()["skipped"][0]
    r = c.post("/api/people", data={"name": "x"}, headers=h,
               files=[("files", ("g.jpg", chips(face_data, 0)[0].read_bytes(), "image/jpeg"))])
    assert r.status_code == 422 and "no usable face" in r.json()["error"]
    r = c.post("/api/recognize", headers={"X-Door-Token": TOKEN},
               files=[("files", ("g.jpg", chips(face_data, 1)[0].read_bytes(), "image/jpeg"))])
    assert r.status_code == 422 and "no face found in frame 1" in r.json()["error"] and r.json()["faces"] == 0
    # two faces: the largest is used, and the answer says so
    both = c.post("/api/recognize", headers={"X-Door-Token": TOKEN},
                  files=[("files", ("2.jpg", _photo([(a2, 260, (20, 60)), (b1, 170, (420, 100))]), "image/jpeg"))])
    alone = c.post("/api/recognize", headers={"X-Door-Token": TOKEN},
                   files=[("files", ("1.jpg", _photo([(a2, 260, (20, 60))]), "image/jpeg"))])
    assert both.status_code == 200 and both.json()["faces"] == 2 and "largest" in both.json()["note"]
    assert both.json()["score"] == pytest.approx(alone.json()["score"], abs=1e-4)  # the large face decided
    assert alone.json()["faces"] == 1 and alone.json()["note"] is None


def test_first_start_makes_secrets_once(face_run, tmp_path):
    """A new store without a password or door token gets random ones, printed once; only hashes are kept."""
    from atalaia.serve.app import first_start_secrets
    from atalaia.serve.store import Store

    db = f"sqlite:///{tmp_path / 'f.db'}"
    cfg, msgs = first_start_secrets(ServeConfig(run_dir=face_run, db=db, aligned=True))
    assert len(msgs) == 2 and cfg.admin_password in msgs[0] and cfg.door_token in msgs[1]
    c = TestClient(create_app(cfg))
    assert c.post("/api/login", json={"password": cfg.admin_password}).status_code == 200
    raw = (tmp_path / "f.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("f.db-*"))
    assert cfg.admin_password.encode() not in raw and cfg.door_token.encode() not in raw
    assert Store(db).admin_hash("admin").startswith("scrypt$")
    again, msgs = first_start_secrets(ServeConfig(run_dir=face_run, db=db, aligned=True))
    assert msgs == [] and again.admin_password is None


@pytest.mark.slow  # the session's tiny detector + recogniser (tests/conftest.py frame_models)
def test_recognise_takes_camera_frames_with_a_detector(frame_models, tmp_path):
    """`atalaia serve --detector RUN`: uploads are whole frames; the answer carries the face's box and score."""
    frames = Path(__file__).resolve().parents[1] / "fixtures" / "frames" / "images"
    cfg = ServeConfig(run_dir=frame_models["face_run"], db=f"sqlite:///{tmp_path / 'access.db'}", door="front",
                      threshold="0.85", detector=frame_models["det_run"], admin_password=PW, door_token=TOKEN)
    c = TestClient(create_app(cfg))
    h = _login(c)
    frame = frames / "celeba" / "024596.jpg"
    assert c.post("/api/people", data={"name": "ann"}, files=_files([frame]), headers=h).status_code == 201
    d = c.post("/api/recognize", files=_files([frame]), headers={"X-Door-Token": TOKEN}).json()
    want = c.app.state.access.check(frame)
    assert d["granted"] and d["person"] == "ann" and d["faces"] == want.faces
    assert d["boxes"] == [pytest.approx(list(want.box), abs=0.06)] and len(d["detector_scores"]) == 1
    assert d["box_frames"] == [0]

"""The access-control case study on a tiny int8 face model: enrol, check, log, gallery safety, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atalaia.errors import AtalaiaError, DataError
from atalaia.face.access import AccessControl
from atalaia.pipeline.runfolder import write_marker


@pytest.fixture(scope="module")
def face_run(face_data, tmp_path_factory):
    """A run folder with only what the app reads: int8_litert/{model.tflite, face_model.json, DONE.json}."""
    import keras

    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.data import load_chip_sets, representative_inputs
    from atalaia.face.train import build_student

    cs = load_chip_sets([face_data["chipset"]], 32)
    keras.utils.set_random_seed(0)  # an untrained model: fix its weights so its embeddings are the same every run
    m = build_student(32, width=0.25, embedding_dim=16)
    blob = convert_int8(m, representative_inputs(cs.images, 16))
    run = tmp_path_factory.mktemp("access_run")
    st = run / "int8_litert"
    st.mkdir()
    (st / "model.tflite").write_bytes(blob)
    r = TFLiteRunner(blob)
    (st / "face_model.json").write_text(json.dumps({
        "grey": True, "crop": 1.0, "input_size": 32, "embedding_dim": 16,
        "input_scale": r.input_scale, "input_zero_point": r.input_zero_point,
        "threshold_lfw_accuracy": 0.5, "threshold_far_1e-3": 0.9, "threshold_far_1e-2": float("nan"),
        "impostor_tail": {"pairs": 10**6, "thresholds": {"0.01": 0.6, "0.001": 0.8, "0.0001": 0.95}}}))
    (st / "metrics.json").write_text("{}")
    write_marker(st, "test")
    return run


def _chips(face_data, ident: int) -> list:
    return sorted((face_data["chipset"] / "chips112" / f"{ident:05d}").glob("*.jpg"))


def test_enrol_check_log_and_reload(face_data, face_run, tmp_path):
    ac = AccessControl(face_run, state_dir=tmp_path / "s", aligned=True, threshold="far_1e-3")
    assert ac.threshold == 0.9 and ac.people == {}
    with pytest.raises(AtalaiaError, match="nobody is enrolled"):
        ac.check(_chips(face_data, 0)[0])
    res = ac.enrol("ann", _chips(face_data, 0)[:3] + [tmp_path / "missing.jpg"])
    assert res["added"] == 3 and res["templates"] == 3 and "not found" in res["skipped"][0][1]
    ac.enrol("bob", _chips(face_data, 1)[:3])
    assert ac.people == {"ann": 3, "bob": 3}

    probe = _chips(face_data, 0)[4]
    d = ac.check(probe)
    # the decision is the 1-NN rule over every template, against the threshold
    e, _ = ac.embed([probe])
    g, gn = ac.embed(_chips(face_data, 0)[:3] + _chips(face_data, 1)[:3])
    sims = g @ e[0]
    assert d.person == ("ann", "ann", "ann", "bob", "bob", "bob")[int(sims.argmax())]
    assert d.score == pytest.approx(float(sims.max()), abs=1e-5)
    assert d.granted == (d.score >= 0.9)
    low = AccessControl(face_run, state_dir=tmp_path / "s", aligned=True, threshold=-0.99)
    assert low.people == ac.people and low.check(probe).granted  # the gallery reloads from disk

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    refused = ac.check(bad)
    assert not refused.granted and refused.person is None and "cannot read" in refused.reason

    assert ac.remove("bob") == 3 and ac.people == {"ann": 3}
    with pytest.raises(AtalaiaError, match="'bob' is not enrolled"):
        ac.remove("bob")
    total, events = ac.store.events(limit=100)
    events = events[::-1]  # oldest first
    assert total == 6 and [ev["kind"] for ev in events] == ["enrol", "enrol", "check", "check", "check", "remove"]
    assert events[4]["granted"] is False and events[4]["score"] is None  # NaN is logged as null
    assert events[2]["person"] == d.person and events[2]["score"] == pytest.approx(d.score)
    # bob's rows keep only his pseudonymous id
    assert events[1]["person"] is None and events[1]["subject"].startswith("p-")
    assert (tmp_path / "s" / "access.db").is_file()


def test_default_threshold_follows_the_gallery_size(face_data, face_run, tmp_path):
    ac = AccessControl(face_run, state_dir=tmp_path, aligned=True)  # open_far_1e-2
    assert ac.threshold == pytest.approx(0.6)  # empty gallery counts as 1 template: p = 1e-2
    ac.enrol("ann", _chips(face_data, 0)[:5])
    # 5 templates: p = 1 - 0.99^(1/5) = 0.00201, between the tail's 1e-2 (0.6) and 1e-3 (0.8)
    p = 1 - 0.99 ** 0.2
    assert ac.threshold == pytest.approx(0.6 + 0.2 * (-2 - np.log10(p)))
    assert ac.warning is None
    ac.enrol("bob", _chips(face_data, 1)[:5])
    assert ac.threshold > 0.6 + 0.2 * (-2 - np.log10(p))
    strict = AccessControl(face_run, state_dir=tmp_path, aligned=True, threshold="open_far_1e-3")
    # 10 templates at 1e-3 open-set FAR need p = 1e-4: exactly the tail's last point
    assert strict.threshold == pytest.approx(0.95, abs=1e-3) and strict.warning is None
    strict.enrol("cid", _chips(face_data, 2)[:5])  # 15 templates: p < 1e-4, beyond what was measured
    assert strict.threshold == pytest.approx(0.95) and "below the smallest one measured" in strict.warning
    assert ac.check(_chips(face_data, 0)[5]).threshold == ac.threshold


def test_bad_inputs_are_clear_errors(face_data, face_run, tmp_path):
    with pytest.raises(AtalaiaError, match="no finished int8 face model"):
        AccessControl(tmp_path)
    with pytest.raises(AtalaiaError, match="far_1e-3, far_1e-2, lfw_accuracy or a cosine"):
        AccessControl(face_run, state_dir=tmp_path, threshold="strict")
    with pytest.raises(AtalaiaError, match=r"in \(-1, 1\)"):
        AccessControl(face_run, state_dir=tmp_path, threshold=1.5)
    with pytest.raises(AtalaiaError, match="no finite threshold_far_1e-2"):
        AccessControl(face_run, state_dir=tmp_path, threshold="far_1e-2")
    facts = json.loads((face_run / "int8_litert" / "face_model.json").read_text())
    old = tmp_path / "old_run"
    (old / "int8_litert").mkdir(parents=True)
    for f in ("model.tflite", "metrics.json"):
        (old / "int8_litert" / f).write_bytes((face_run / "int8_litert" / f).read_bytes())
    facts.pop("impostor_tail")
    (old / "int8_litert" / "face_model.json").write_text(json.dumps(facts))
    write_marker(old / "int8_litert", "test")
    with pytest.raises(AtalaiaError, match="no impostor_tail"):
        AccessControl(old, state_dir=tmp_path)
    assert AccessControl(old, state_dir=tmp_path, threshold="0.7").threshold == 0.7
    ac = AccessControl(face_run, state_dir=tmp_path, aligned=True)
    with pytest.raises(DataError, match="none of the 1 image"):
        ac.enrol("ann", [tmp_path / "nope.jpg"])
    assert ac.people == {} and ac.store.events()[0] == 0  # nothing saved
    ac.enrol("ann", _chips(face_data, 0)[:1])
    ac.store.set_meta("model_sha256", "0" * 64)
    with pytest.raises(DataError, match="enrolled with another model"):
        AccessControl(face_run, state_dir=tmp_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "gallery.json").write_text("{")
    with pytest.raises(DataError, match="not an AtalaIA gallery"):
        AccessControl(face_run, state_dir=fresh)


def test_cli_enrol_check_list_remove(face_data, face_run, tmp_path):
    from typer.testing import CliRunner

    from atalaia.cli import app

    run, st = str(face_run), ["--state", str(tmp_path / "s")]
    cli = CliRunner()
    res = cli.invoke(app, ["access", "enrol", run, "ann", *map(str, _chips(face_data, 0)[:2]), *st, "--aligned"])
    assert res.exit_code == 0 and "2 template(s) added" in res.output, res.output
    res = cli.invoke(app, ["access", "check", run, str(_chips(face_data, 0)[3]), *st, "--aligned",
                           "--threshold", "-0.99"])
    assert res.exit_code == 0 and "GRANTED" in res.output and "ann" in res.output, res.output
    res = cli.invoke(app, ["access", "check", run, str(_chips(face_data, 0)[3]), *st, "--aligned",
                           "--threshold", "0.9999"])
    assert res.exit_code == 1 and "REFUSED" in res.output, res.output
    assert "ann: 2 template(s)" in cli.invoke(app, ["access", "list", run, *st]).output
    assert cli.invoke(app, ["access", "remove", run, "ann", *st]).exit_code == 0
    assert "nobody is enrolled" in cli.invoke(app, ["access", "list", run, *st]).output


def test_old_gallery_and_log_are_imported_once(face_data, face_run, tmp_path):
    """The file-based state of earlier versions moves into the store once; the files (biometric data) go."""
    donor = AccessControl(face_run, state_dir=tmp_path / "donor", aligned=True)
    emb, _ = donor.embed(_chips(face_data, 0)[:2])
    old = tmp_path / "old"
    old.mkdir()
    (old / "gallery.json").write_text(json.dumps({"model_sha256": donor.model_sha256, "embedding_dim": 16,
                                                   "people": {"ann": emb.tolist()}}))
    (old / "events.jsonl").write_text(
        json.dumps({"time": "2026-01-02T03:04:05+0000", "event": "enrol", "person": "ann", "added": 2}) + "\n"
        + json.dumps({"time": "2026-01-02T03:05:00+0000", "event": "check", "image": "x.jpg", "granted": True,
                      "person": "ann", "score": 0.9, "threshold": 0.6, "reason": "match"}) + "\n")
    ac = AccessControl(face_run, state_dir=old, aligned=True)
    assert ac.imported == {"people": 1, "templates": 2, "events": 2}
    assert not (old / "gallery.json").exists() and not (old / "events.jsonl").exists()
    assert ac.people == {"ann": 2}
    total, evs = ac.store.events()
    assert total == 2 and {e["time"] for e in evs} == {"2026-01-02T03:04:05Z", "2026-01-02T03:05:00Z"}
    assert ac.check(_chips(face_data, 0)[0]).score == pytest.approx(1.0, abs=1e-4)  # its own template
    again = AccessControl(face_run, state_dir=old, aligned=True)
    assert again.imported is None and again.people == {"ann": 2}  # once


def test_burst_is_a_majority_of_the_single_frame_rule(face_data, face_run, tmp_path):
    from atalaia.face.access import majority

    ac = AccessControl(face_run, state_dir=tmp_path, aligned=True, threshold=0.5)
    ac.enrol("ann", _chips(face_data, 0)[:3])
    ac.enrol("bob", _chips(face_data, 1)[:3])
    frames = _chips(face_data, 0)[3:6]
    d = ac.check_burst(frames)
    singles = [ac.check(f) for f in frames]  # each frame through the one-image rule
    want = majority([(x.person, x.score, x.threshold) for x in singles])
    assert (d.person, d.score, d.granted, d.frames) == (want[0], pytest.approx(want[1], abs=1e-5), want[2], 3)
    assert d.event_id is not None and "of 3 frames matched" in d.reason
    # the vote itself: 2 of 3 as one person grants, a split or a single vote does not
    assert majority([("a", 0.9, 0.5), ("a", 0.6, 0.5), ("b", 0.8, 0.5)]) == ("a", 0.9, True, 2)
    assert majority([("a", 0.9, 0.5), ("b", 0.6, 0.5), ("c", 0.4, 0.5)])[2] is False
    assert majority([("a", 0.9, 0.5), ("a", 0.4, 0.5), ("a", 0.45, 0.5)]) == ("a", 0.9, False, 1)
    assert majority([("a", 0.7, 0.5)]) == ("a", 0.7, True, 1)  # one frame = the single-image rule
    assert majority([("a", 0.7, 0.5), ("a", 0.6, 0.5)])[2] is True and majority([("a", 0.7, 0.5), ("a", 0.4, 0.5)])[2] is False
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    d2 = ac.check_burst([bad, frames[0]])  # an unreadable frame is dropped, the others decide
    assert d2.frames == 1 and d2.score == pytest.approx(singles[0].score, abs=1e-5)
    assert not ac.check_burst([bad]).granted


def test_mirror_tta_model_embeds_each_face_and_its_mirror(face_data, face_run, tmp_path):
    """A model measured with face.mirror_tta must be used the same way by the app (and the firmware)."""
    import shutil

    from atalaia.evaluate.verification import mirror_fuse

    run = tmp_path / "tta_run"
    shutil.copytree(face_run, run)
    facts_path = run / "int8_litert" / "face_model.json"
    facts = json.loads(facts_path.read_text())
    facts_path.write_text(json.dumps({**facts, "mirror_tta": True}))
    write_marker(run / "int8_litert", "test")
    plain = AccessControl(face_run, state_dir=tmp_path / "a", aligned=True)
    tta = AccessControl(run, state_dir=tmp_path / "b", aligned=True)
    chips = _chips(face_data, 0)[:3]
    x = np.stack([plain.probe(c).x for c in chips])
    want = mirror_fuse(plain._runner.predict(x), plain._runner.predict(x[:, :, ::-1]))
    got, _ = tta.embed(chips)
    np.testing.assert_allclose(got, want, atol=1e-6)
    e_plain, _ = plain.embed(chips)
    assert not np.allclose(got, e_plain, atol=1e-3)  # the mirror really enters the embedding


def test_a_damaged_model_is_refused_not_used(face_run, tmp_path):
    import shutil

    run = tmp_path / "damaged"
    shutil.copytree(face_run, run)
    blob = run / "int8_litert" / "model.tflite"
    blob.write_bytes(blob.read_bytes()[:1000])  # a copy gone wrong
    with pytest.raises(AtalaiaError, match="model.tflite has 1000 bytes"):
        AccessControl(run, state_dir=tmp_path / "s", aligned=True)


# ------------------------------------------------------------------------------------------ camera frames
FRAMES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "frames" / "images"


@pytest.mark.slow  # builds the session's tiny detector + recogniser (~20 s CPU); the checks take ~3 s
@pytest.mark.parametrize("runtime", ["litert", "tflm"])
def test_frame_to_decision_with_the_detector(frame_models, tmp_path, runtime):
    """A whole camera frame (RGB or grey, any size) -> detector -> largest face -> chip -> decision, both
    models int8 in LiteRT or in TFLM; the same decisions either way; a frame without a face is a clear refusal."""
    from atalaia.face.access import load_detector
    from atalaia.face.frame import pick_face

    ac = AccessControl(frame_models["face_run"], state_dir=tmp_path / runtime, detector=frame_models["det_run"],
                       threshold=0.85, runtime=runtime)
    frame = FRAMES / "celeba" / "024596.jpg"
    ac.enrol("ann", [frame])
    d = ac.check(frame)
    assert d.granted and d.person == "ann" and d.score > 0.99 and d.faces >= 2  # random head: several boxes
    det = load_detector(frame_models["det_run"])
    dets, _, _ = det.detect(np.asarray(__import__("PIL.Image").Image.open(frame).convert("L")))
    k = pick_face(dets)
    assert d.box == pytest.approx(tuple(dets.boxes[k])) and d.det_score == pytest.approx(dets.scores[k])
    assert {"read", "letterbox", "detector", "decode_nms", "align", "recogniser", "decide"} <= set(d.timings_ms)
    assert "the largest was used" in d.reason
    rgb = tmp_path / "rgb_big.png"  # the same scene as a bigger RGB image: read as grey, letterboxed
    __import__("PIL.Image").Image.open(frame).convert("RGB").resize((280, 384)).save(rgb)
    assert ac.check(rgb).person == "ann"
    none = AccessControl(frame_models["face_run"], state_dir=tmp_path / runtime, threshold=0.85, runtime=runtime,
                         detector=frame_models["no_face_run"])
    n = none.check(frame)
    assert not n.granted and n.faces == 0 and n.reason.startswith("no face found in") and "0.999" in n.reason


@pytest.mark.slow
def test_cli_frames_need_an_explicit_path_and_say_no_face(frame_models, tmp_path):
    from typer.testing import CliRunner

    from atalaia.cli import app

    run, st = str(frame_models["face_run"]), ["--state", str(tmp_path / "s")]
    frame = str(FRAMES / "celeba" / "024596.jpg")
    cli = CliRunner()
    res = cli.invoke(app, ["access", "check", run, frame, *st])
    assert isinstance(res.exception, AtalaiaError) and "--detector RUN" in str(res.exception)
    res = cli.invoke(app, ["access", "check", run, frame, *st, "--aligned", "--detector", run])
    assert "--aligned and --detector" in str(res.exception)
    det = ["--detector", str(frame_models["det_run"])]
    assert cli.invoke(app, ["access", "enrol", run, "ann", frame, *st, *det]).exit_code == 0
    res = cli.invoke(app, ["access", "check", run, frame, *st, *det, "--threshold", "0.85"])
    assert res.exit_code == 0 and "GRANTED" in res.output and "detector score" in res.output, res.output
    assert "the largest used; ms (litert): read" in res.output
    res = cli.invoke(app, ["access", "check", run, frame, *st, "--detector", str(frame_models["no_face_run"])])
    assert res.exit_code == 3 and "NO FACE" in res.output, res.output
    res = cli.invoke(app, ["access", "check", run, frame, *st, "--detector", run])  # a face run is no detector
    assert isinstance(res.exception, AtalaiaError) and "no finished int8 detector" in str(res.exception)


@pytest.mark.slow
def test_damaged_detector_is_refused_with_one_line(frame_models, tmp_path):
    import shutil

    from atalaia.face.access import load_detector

    bad = tmp_path / "det"
    shutil.copytree(frame_models["det_run"], bad)
    (bad / "int8" / "model.tflite").write_bytes(b"\0" * 100)
    with pytest.raises(AtalaiaError, match=r"model.tflite has 100 bytes, \d+ were written"):
        load_detector(bad)
    (bad / "recipe.yaml").unlink()
    shutil.copy(frame_models["det_run"] / "int8" / "model.tflite", bad / "int8" / "model.tflite")
    with pytest.raises(AtalaiaError, match="operating point is read from .*recipe.yaml"):
        load_detector(bad)

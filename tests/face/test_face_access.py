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
    from atalaia.deploy.tflite import TFLiteRunner, convert_int8
    from atalaia.face.data import load_chip_sets, representative_inputs
    from atalaia.face.train import build_student

    import keras

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
    events = [json.loads(x) for x in (tmp_path / "s" / "events.jsonl").read_text().splitlines()]
    assert [ev["event"] for ev in events] == ["enrol", "enrol", "check", "check", "check", "remove"]
    assert events[4]["granted"] is False and events[4]["score"] is None  # NaN is logged as null


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
    assert not (tmp_path / "gallery.json").exists()  # nothing saved
    ac.enrol("ann", _chips(face_data, 0)[:1])
    doc = json.loads((tmp_path / "gallery.json").read_text())
    doc["model_sha256"] = "0" * 64
    (tmp_path / "gallery.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="enrolled with another model"):
        AccessControl(face_run, state_dir=tmp_path)
    (tmp_path / "gallery.json").write_text("{")
    with pytest.raises(DataError, match="not an AtalaIA gallery"):
        AccessControl(face_run, state_dir=tmp_path)


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
    x = np.stack([plain._model_input(c) for c in chips])
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

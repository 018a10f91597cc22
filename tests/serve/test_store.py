"""The access store on SQLite and PostgreSQL: migrations, gallery, events, deletion, outbox, injection safety."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from atalaia.errors import AtalaiaError
from atalaia.serve.store import MIGRATIONS, Store


def test_schema_gallery_events_and_complete_deletion(db_url):
    s = Store(db_url)
    assert s.schema_version == MIGRATIONS[-1][0]
    assert Store(db_url).schema_version == s.schema_version  # re-opening applies nothing twice
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 16)).astype(np.float32)
    v0 = s.gallery_version
    assert s.add_templates("ann", e[:2], [b"jpeg-1", b"jpeg-2"], event={"door": "front", "kind": "enrol",
                                                                        "source": "local"}) == 2
    assert s.add_templates("bob", e[2:]) == 1 and s.gallery_version == v0 + 2
    names, mat = s.gallery()
    assert names == ["ann", "ann", "bob"] and np.array_equal(mat, e)  # float32 round trip, bit exact
    assert [(p.name, p.templates) for p in s.people()] == [("ann", 2), ("bob", 1)]
    ann = s.subject_of("ann")
    for k in range(5):
        s.add_event({"door": "front" if k % 2 else "back", "kind": "check", "source": "local", "person": "ann",
                     "granted": k % 2 == 0, "score": 0.5 + k / 10, "threshold": 0.6, "reason": "match",
                     "image": b"frame" if k == 0 else None},
                    outbox=[("mqtt", "atalaia/front/event", {"person": "ann", "granted": True})])
    total, page = s.events(person="ann", limit=2, offset=1)
    assert total == 6 and len(page) == 2 and page[0]["id"] > page[1]["id"]  # newest first
    assert s.events(granted=True, kind="check")[0] == 3 and s.events(door="back")[0] == 3
    assert s.events(until="1999-01-01")[0] == 0 and s.events(since="1999-01-01")[0] == 6
    assert s.photos_of("ann") == 2 and s.outbox_counts() == {"mqtt": 5}

    assert s.delete_person("ann", event={"door": "front", "kind": "remove", "source": "local"}) == 2
    left = s.biometric_rows("ann", ann)
    assert left == {"people": 0, "templates": 0, "events_with_name": 0, "event_images": 0, "outbox_with_name": 0}
    total, page = s.events(person=ann, limit=100)  # the rows stay, under the pseudonym only
    assert total == 7 and all(r["person"] is None and r["subject"] == ann and not r["has_image"] for r in page)
    assert s.gallery()[0] == ["bob"] and s.delete_person("ann") == 0


def test_sql_injection_is_data(db_url):
    s = Store(db_url)
    evil = "x'); DROP TABLE people; --"
    s.add_templates(evil, np.ones((1, 4), np.float32))
    assert [p.name for p in s.people()] == [evil]
    assert s.events(person="' OR 1=1 --")[0] == 0
    assert s.delete_person(evil) == 1 and s.people() == []


def test_outbox_retry_and_delivery(db_url):
    s = Store(db_url)
    eid = s.add_event({"door": "d", "kind": "check", "source": "local", "granted": False},
                      outbox=[("mqtt", "atalaia/d/event", {"granted": False}), ("webhook", "", {"granted": False})])
    (oid, topic, payload, attempts), = s.pending("mqtt")
    assert topic == "atalaia/d/event" and f'"event_id": {eid}' in payload and attempts == 0
    s.retry_later(oid, "broker down", 3600)
    assert s.pending("mqtt") == [] and s.outbox_counts() == {"mqtt": 1, "webhook": 1}
    (wid, *_), = s.pending("webhook")
    s.delivered(wid)
    assert s.outbox_counts() == {"mqtt": 1}


def test_bad_urls_and_newer_schema(tmp_path):
    with pytest.raises(AtalaiaError, match="--db must be"):
        Store("mysql://x")
    with pytest.raises(AtalaiaError, match="cannot connect"):
        Store("postgresql://u:secret@127.0.0.1:1/db")
    try:
        Store("postgresql://u:secret@127.0.0.1:1/db")
    except AtalaiaError as e:
        assert "secret" not in str(e)
    db = tmp_path / "a.db"
    Store(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(AtalaiaError, match="newer than this"):
        Store(f"sqlite:///{db}")
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cli_access_on_the_store(face_data, face_run, db_url, tmp_path):
    """`atalaia access` works on the same store, SQLite or PostgreSQL (--db)."""
    from typer.testing import CliRunner

    from atalaia.cli import app

    chips = sorted((face_data["chipset"] / "chips112" / "00002").glob("*.jpg"))
    run, st = str(face_run), ["--state", str(tmp_path / "s"), "--db", db_url]
    cli = CliRunner()
    res = cli.invoke(app, ["access", "enrol", run, "ann", *map(str, chips[:3]), *st, "--aligned"])
    assert res.exit_code == 0 and "3 template(s) added" in res.output, res.output
    res = cli.invoke(app, ["access", "check", run, str(chips[3]), *st, "--aligned", "--threshold", "0.85"])
    assert res.exit_code == 0 and "GRANTED" in res.output, res.output
    assert "ann: 3 template(s)" in cli.invoke(app, ["access", "list", run, *st]).output
    s = Store(db_url)
    assert s.events(kind="check")[1][0]["door"] == "cli" and [p.name for p in s.people()] == ["ann"]
    assert cli.invoke(app, ["access", "remove", run, "ann", *st]).exit_code == 0
    assert s.people() == [] and s.gallery()[0] == []


def test_sqlite_deletion_leaves_no_bytes_in_the_files(tmp_path):
    """secure_delete + WAL truncation: a deleted template or photo is not recoverable from the database files."""
    db = tmp_path / "s.db"
    s = Store(f"sqlite:///{db}")
    emb = np.full((1, 32), 0.123456, np.float32)
    photo = b"PHOTO-BYTES-" + bytes(range(256)) * 8
    s.add_templates("ann", emb, [photo])
    s.add_event({"door": "d", "kind": "check", "source": "local", "person": "ann", "image": photo})
    s.add_templates("bob", np.zeros((1, 32), np.float32))
    def raw() -> bytes:
        return b"".join(f.read_bytes() for f in tmp_path.glob("s.db*"))
    needle = emb[0].astype("<f4").tobytes()[:64]
    assert needle in raw() or photo[:64] in raw()  # before: somewhere in the db or the WAL
    s.delete_person("ann")
    data = raw()
    assert needle not in data and photo[:64] not in data and b"PHOTO-BYTES-" not in data
    assert [p.name for p in s.people()] == ["bob"]

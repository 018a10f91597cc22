"""One store for the door-access CLI and service: people, templates, events, outbox, admins, sessions.

Why a database and not the old `gallery.json` + `events.jsonl`: a web service answers concurrent requests, a
building has several doors on one server, and deleting a person must remove their biometric data from every
place at once (a transaction), which append-only files cannot do.

- SQLite by default (`RUN/access/access.db`, WAL mode so the CLI and a running service can share it);
- PostgreSQL with a `postgresql://` URL, the same schema (a few column types differ per dialect);
- migrations are a numbered list in this file (`MIGRATIONS`); `schema_version` records the last applied;
- every statement is parameterised (`?` placeholders, rewritten to `%s` for psycopg2): no value is ever
  formatted into SQL text.

Biometric data lives in `templates.embedding` and, only when photos are kept, `templates.photo` and
`events.image`; `delete_person` removes all of it in one transaction and leaves the person's events with a
pseudonymous id (`subject`) instead of the name. On SQLite, `secure_delete` overwrites the deleted rows and the
WAL is checkpointed and truncated after a deletion, so the bytes are gone from the files too; PostgreSQL keeps
dead rows in its data files until VACUUM reuses the space (the README says so).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atalaia.errors import AtalaiaError

# (version, statements). {id}, {blob}, {real} are the dialect's types; never a value.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE people (id {id}, name TEXT NOT NULL UNIQUE, subject TEXT NOT NULL UNIQUE, "
        "created_at TEXT NOT NULL)",
        "CREATE TABLE templates (id {id}, person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE, "
        "embedding {blob} NOT NULL, photo {blob}, created_at TEXT NOT NULL)",
        "CREATE INDEX templates_person ON templates(person_id)",
        "CREATE TABLE events (id {id}, time TEXT NOT NULL, door TEXT NOT NULL, kind TEXT NOT NULL, "
        "source TEXT NOT NULL, person TEXT, subject TEXT, granted INTEGER, score {real}, threshold {real}, "
        "far TEXT, frames INTEGER, reason TEXT, image {blob})",
        "CREATE INDEX events_time ON events(time)",
        "CREATE INDEX events_subject ON events(subject)",
        "CREATE TABLE outbox (id {id}, event_id BIGINT NOT NULL, target TEXT NOT NULL, topic TEXT NOT NULL, "
        "payload TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_try {real} NOT NULL, "
        "delivered_at TEXT, last_error TEXT)",
        "CREATE INDEX outbox_pending ON outbox(delivered_at, next_try)",
        "CREATE TABLE admins (name TEXT PRIMARY KEY, pw_hash TEXT NOT NULL)",
        "CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, admin TEXT NOT NULL, csrf TEXT NOT NULL, "
        "expires {real} NOT NULL)",
        "CREATE TABLE doors (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL)",
    ]),
]
_TYPES = {"sqlite": {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"},
          "postgresql": {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"}}
EVENT_COLUMNS = ("id", "time", "door", "kind", "source", "person", "subject", "granted", "score", "threshold",
                 "far", "frames", "reason")


def now_iso() -> str:
    """UTC, second resolution, sortable as text (the log is filtered and ordered on it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Person:
    name: str
    subject: str
    templates: int
    created_at: str


class Store:
    """A connection to the access database. Thread-safe: one connection, one lock (the service's requests are
    short; SQLite serialises writers anyway)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        if url.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
            try:
                import psycopg2
            except ImportError:
                raise AtalaiaError("--db postgresql://... needs psycopg2: pip install 'atalaia[postgres]'") from None
            self.dialect = "postgresql"
            dsn = "postgresql://" + url.split("://", 1)[1]
            try:
                self._con = psycopg2.connect(dsn)
            except psycopg2.Error as e:
                raise AtalaiaError(f"cannot connect to the database {_redact(url)}: {str(e).strip()}") from None
            self._con.autocommit = False
            self._integrity = psycopg2.IntegrityError
        elif url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            self.dialect = "sqlite"
            try:
                self._con = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
                self._con.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as e:
                raise AtalaiaError(f"{path} is not a usable SQLite database ({e}); move it away") from None
            self._con.execute("PRAGMA foreign_keys=ON")
            self._con.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
            self._con.execute("PRAGMA busy_timeout=30000")
            self._integrity = sqlite3.IntegrityError
        else:
            raise AtalaiaError(f"--db must be sqlite:///PATH or postgresql://USER:PW@HOST:PORT/DB, got '{url}'")
        self._migrate()

    # ------------------------------------------------------------------------------------------ plumbing
    @contextmanager
    def tx(self) -> Iterator[Any]:
        """A transaction: commit on success, roll back on any error. Yields a cursor-like `q(sql, params)`."""
        with self._lock:
            if self.dialect == "sqlite":
                self._con.execute("BEGIN IMMEDIATE")
                cur = self._con.cursor()
            else:
                cur = self._con.cursor()
            try:
                yield _Query(cur, self.dialect)
                self._con.commit() if self.dialect == "postgresql" else self._con.execute("COMMIT")
            except BaseException:
                self._con.rollback() if self.dialect == "postgresql" else self._con.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _migrate(self) -> None:
        with self.tx() as q:
            if self.dialect == "sqlite":
                exists = q("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'").fetchone()
            else:
                exists = q("SELECT 1 FROM information_schema.tables WHERE table_name='schema_version' "
                           "AND table_schema=current_schema()").fetchone()
            if not exists:
                q("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                q("INSERT INTO schema_version (version) VALUES (?)", (0,))
            have = int(q("SELECT version FROM schema_version").fetchone()[0])
            latest = MIGRATIONS[-1][0]
            if have > latest:
                raise AtalaiaError(f"the database {_redact(self.url)} has schema version {have}, newer than this "
                                   f"AtalaIA's {latest}: upgrade AtalaIA")
            for version, statements in MIGRATIONS:
                if version > have:
                    for s in statements:
                        q(s.format(**_TYPES[self.dialect]))
                    q("UPDATE schema_version SET version = ?", (version,))

    @property
    def schema_version(self) -> int:
        with self.tx() as q:
            return int(q("SELECT version FROM schema_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _blob(self, b: bytes | None) -> Any:
        if b is None:
            return None
        if self.dialect == "postgresql":
            import psycopg2

            return psycopg2.Binary(b)
        return b

    # ------------------------------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        with self.tx() as q:
            row = q("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as q:
            _upsert_meta(q, key, value)

    @property
    def gallery_version(self) -> int:
        """Bumped by every enrol/delete, so a process can tell its cached gallery is stale (other doors)."""
        return int(self.get_meta("gallery_version") or 0)

    # ------------------------------------------------------------------------------------------ gallery
    def add_templates(self, name: str, embeddings: np.ndarray, photos: Sequence[bytes | None] | None = None,
                      event: dict[str, Any] | None = None) -> int:
        """Append templates for `name` (created if new) and, in the same transaction, the enrol event.
        Returns the person's template count."""
        emb = np.asarray(embeddings, np.float32)
        photos = list(photos) if photos is not None else [None] * len(emb)
        with self.tx() as q:
            row = q("SELECT id, subject FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                row = q("INSERT INTO people (name, subject, created_at) VALUES (?, ?, ?) RETURNING id, subject",
                        (name, "p-" + secrets.token_hex(6), now_iso())).fetchone()
            pid, subject = int(row[0]), str(row[1])
            for e, ph in zip(emb, photos, strict=True):
                q("INSERT INTO templates (person_id, embedding, photo, created_at) VALUES (?, ?, ?, ?)",
                  (pid, self._blob(e.astype("<f4").tobytes()), self._blob(ph), now_iso()))
            _bump(q)
            if event is not None:
                self._insert_event(q, {**event, "person": name, "subject": subject})
            return int(q("SELECT COUNT(*) FROM templates WHERE person_id = ?", (pid,)).fetchone()[0])

    def delete_person(self, name: str, event: dict[str, Any] | None = None) -> int:
        """Remove a person's templates and photos, and the images and name on their events (the rows keep the
        pseudonymous subject id). Returns the number of templates deleted; 0 if unknown."""
        with self.tx() as q:
            row = q("SELECT id, subject FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                return 0
            pid, subject = int(row[0]), str(row[1])
            n = int(q("SELECT COUNT(*) FROM templates WHERE person_id = ?", (pid,)).fetchone()[0])
            q("DELETE FROM templates WHERE person_id = ?", (pid,))
            q("DELETE FROM people WHERE id = ?", (pid,))
            q("UPDATE events SET person = NULL, image = NULL, subject = ? WHERE person = ? OR subject = ?",
              (subject, name, subject))
            q("UPDATE events SET reason = REPLACE(reason, ?, ?) WHERE subject = ?", (name, subject, subject))
            # undelivered notifications still carry the name: rewrite them to the pseudonym
            for oid, payload in q("SELECT id, payload FROM outbox WHERE delivered_at IS NULL").fetchall():
                doc = json.loads(payload)
                if doc.get("person") == name:
                    doc["person"] = None
                    q("UPDATE outbox SET payload = ? WHERE id = ?", (json.dumps(doc), oid))
            _bump(q)
            if event is not None:
                self._insert_event(q, {**event, "person": None, "subject": subject})
        if self.dialect == "sqlite":  # the WAL still holds the old pages until a checkpoint: flush and truncate
            with self._lock:
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def people(self) -> list[Person]:
        with self.tx() as q:
            rows = q("SELECT p.name, p.subject, COUNT(t.id), p.created_at FROM people p LEFT JOIN templates t "
                     "ON t.person_id = p.id GROUP BY p.id, p.name, p.subject, p.created_at ORDER BY p.name").fetchall()
        return [Person(str(a), str(b), int(c), str(d)) for a, b, c, d in rows]

    def gallery(self) -> tuple[list[str], np.ndarray]:
        """(name per template, templates as (T, D) float32), in a stable order."""
        with self.tx() as q:
            rows = q("SELECT p.name, t.embedding FROM templates t JOIN people p ON p.id = t.person_id "
                     "ORDER BY t.id").fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        return [str(r[0]) for r in rows], np.stack([np.frombuffer(bytes(r[1]), "<f4") for r in rows])

    def subject_of(self, name: str) -> str | None:
        with self.tx() as q:
            row = q("SELECT subject FROM people WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def photos_of(self, name: str) -> int:
        """How many photos are kept for `name` (templates with a photo)."""
        with self.tx() as q:
            return int(q("SELECT COUNT(*) FROM templates t JOIN people p ON p.id = t.person_id WHERE p.name = ? "
                         "AND t.photo IS NOT NULL", (name,)).fetchone()[0])

    # ------------------------------------------------------------------------------------------ events
    def _insert_event(self, q: Any, ev: dict[str, Any]) -> int:
        cols = [c for c in EVENT_COLUMNS if c != "id" and c in ev] + (["image"] if ev.get("image") else [])
        vals = [ev[c] if c != "image" else self._blob(ev[c]) for c in cols]
        if "time" not in ev:
            cols, vals = [*cols, "time"], [*vals, now_iso()]
        if "granted" in ev and ev["granted"] is not None:
            vals[cols.index("granted")] = int(bool(ev["granted"]))
        sql = f"INSERT INTO events ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) RETURNING id"
        return int(q(sql, vals).fetchone()[0])

    def add_event(self, ev: dict[str, Any], outbox: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> int:
        """Store one event and, in the same transaction, its pending notifications (target, topic, payload):
        the decision is durable before anything is sent. Returns the event id."""
        for k in ("door", "kind", "source"):
            if not ev.get(k):
                raise AtalaiaError(f"an event needs '{k}'")
        with self.tx() as q:
            if ev.get("person") and "subject" not in ev:
                row = q("SELECT subject FROM people WHERE name = ?", (ev["person"],)).fetchone()
                ev = {**ev, "subject": None if row is None else str(row[0])}
            eid = self._insert_event(q, ev)
            for target, topic, payload in outbox:
                q("INSERT INTO outbox (event_id, target, topic, payload, next_try) VALUES (?, ?, ?, ?, ?)",
                  (eid, target, topic, json.dumps({**payload, "event_id": eid}), time.time()))
            return eid

    def events(self, *, person: str | None = None, granted: bool | None = None, kind: str | None = None,
               since: str | None = None, until: str | None = None, door: str | None = None,
               limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(total matching, one page newest first). `person` matches the name or the pseudonymous subject;
        since/until are ISO dates or times (until a date = to the end of that day)."""
        where, args = [], []
        if person:
            where.append("(person = ? OR subject = ?)")
            args += [person, person]
        if granted is not None:
            where.append("granted = ?")
            args.append(int(granted))
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if door:
            where.append("door = ?")
            args.append(door)
        if since:
            where.append("time >= ?")
            args.append(since)
        if until:
            where.append("time <= ?")
            args.append(until + "T99" if len(until) == 10 else until)
        w = (" WHERE " + " AND ".join(where)) if where else ""
        with self.tx() as q:
            total = int(q("SELECT COUNT(*) FROM events" + w, args).fetchone()[0])
            rows = q(f"SELECT {', '.join(EVENT_COLUMNS)}, image IS NOT NULL FROM events{w} "
                     "ORDER BY time DESC, id DESC LIMIT ? OFFSET ?", [*args, int(limit), int(offset)]).fetchall()
        out = []
        for r in rows:
            d = dict(zip(EVENT_COLUMNS, r[:-1], strict=True))
            d["granted"] = None if d["granted"] is None else bool(d["granted"])
            d["has_image"] = bool(r[-1])
            out.append(d)
        return total, out

    def event_image(self, event_id: int) -> bytes | None:
        with self.tx() as q:
            row = q("SELECT image FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def biometric_rows(self, name: str, subject: str) -> dict[str, int]:
        """What is left of a person anywhere in the store (the deletion test's check)."""
        with self.tx() as q:
            return {
                "people": int(q("SELECT COUNT(*) FROM people WHERE name = ? OR subject = ?",
                                (name, subject)).fetchone()[0]),
                "templates": int(q("SELECT COUNT(*) FROM templates t LEFT JOIN people p ON p.id = t.person_id "
                                   "WHERE p.id IS NULL OR p.name = ?", (name,)).fetchone()[0]),
                "events_with_name": int(q("SELECT COUNT(*) FROM events WHERE person = ? OR reason LIKE ?",
                                          (name, f"%{name}%")).fetchone()[0]),
                "event_images": int(q("SELECT COUNT(*) FROM events WHERE subject = ? AND image IS NOT NULL",
                                      (subject,)).fetchone()[0]),
                "outbox_with_name": int(q("SELECT COUNT(*) FROM outbox WHERE payload LIKE ?",
                                          (f"%{json.dumps(name)}%",)).fetchone()[0]),
            }

    # ------------------------------------------------------------------------------------------ outbox
    def pending(self, target: str, limit: int = 100) -> list[tuple[int, str, str, int]]:
        """Undelivered notifications due now: (id, topic, payload, attempts), oldest first."""
        with self.tx() as q:
            rows = q("SELECT id, topic, payload, attempts FROM outbox WHERE delivered_at IS NULL AND target = ? "
                     "AND next_try <= ? ORDER BY id LIMIT ?", (target, time.time(), int(limit))).fetchall()
        return [(int(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def delivered(self, outbox_id: int) -> None:
        with self.tx() as q:
            q("UPDATE outbox SET delivered_at = ?, last_error = NULL WHERE id = ?", (now_iso(), int(outbox_id)))

    def retry_later(self, outbox_id: int, error: str, delay_s: float) -> None:
        with self.tx() as q:
            q("UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE id = ?",
              (time.time() + delay_s, error[:500], int(outbox_id)))

    def trim_outbox(self, max_pending: int) -> int:
        """Bound the queue: beyond `max_pending` undelivered notifications per target, the oldest are marked
        dropped (their events stay in the log). Returns how many were dropped."""
        dropped = 0
        with self.tx() as q:
            for target, n in q("SELECT target, COUNT(*) FROM outbox WHERE delivered_at IS NULL "
                               "GROUP BY target").fetchall():
                extra = int(n) - int(max_pending)
                if extra > 0:
                    ids = [r[0] for r in q("SELECT id FROM outbox WHERE delivered_at IS NULL AND target = ? "
                                           "ORDER BY id LIMIT ?", (target, extra)).fetchall()]
                    for i in ids:
                        q("UPDATE outbox SET delivered_at = ?, last_error = ? WHERE id = ?",
                          (now_iso(), "dropped: queue full", i))
                    dropped += len(ids)
        return dropped

    def outbox_counts(self) -> dict[str, int]:
        with self.tx() as q:
            rows = q("SELECT target, COUNT(*) FROM outbox WHERE delivered_at IS NULL GROUP BY target").fetchall()
        return {str(t): int(n) for t, n in rows}

    # ------------------------------------------------------------------------------------------ auth rows
    def set_admin(self, name: str, pw_hash: str) -> None:
        with self.tx() as q:
            q("DELETE FROM admins WHERE name = ?", (name,))
            q("INSERT INTO admins (name, pw_hash) VALUES (?, ?)", (name, pw_hash))

    def admin_hash(self, name: str) -> str | None:
        with self.tx() as q:
            row = q("SELECT pw_hash FROM admins WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def add_session(self, token_hash: str, admin: str, csrf: str, expires: float) -> None:
        with self.tx() as q:
            q("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            q("INSERT INTO sessions (token_hash, admin, csrf, expires) VALUES (?, ?, ?, ?)",
              (token_hash, admin, csrf, expires))

    def session(self, token_hash: str) -> tuple[str, str] | None:
        """(admin, csrf token) of a live session."""
        with self.tx() as q:
            row = q("SELECT admin, csrf FROM sessions WHERE token_hash = ? AND expires > ?",
                    (token_hash, time.time())).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def drop_session(self, token_hash: str) -> None:
        with self.tx() as q:
            q("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def set_door(self, name: str, token_hash: str) -> None:
        with self.tx() as q:
            q("DELETE FROM doors WHERE name = ?", (name,))
            q("INSERT INTO doors (name, token_hash) VALUES (?, ?)", (name, token_hash))

    def door_hash(self, name: str) -> str | None:
        with self.tx() as q:
            row = q("SELECT token_hash FROM doors WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def doors(self) -> list[str]:
        with self.tx() as q:
            return [str(r[0]) for r in q("SELECT name FROM doors ORDER BY name").fetchall()]

    # ------------------------------------------------------------------------------------------ legacy files
    def import_legacy(self, state_dir: Path, model_sha256: str) -> dict[str, int] | None:
        """Import `gallery.json` + `events.jsonl` written by the file-based `atalaia access` once, then delete
        them (they hold the same biometric data; keeping a copy would defeat deleting a person). Returns counts,
        or None when there was nothing to import."""
        from atalaia.errors import DataError

        g, log = state_dir / "gallery.json", state_dir / "events.jsonl"
        if not g.is_file() and not log.is_file():
            return None
        people: dict[str, list[list[float]]] = {}
        if g.is_file():
            try:
                doc = json.loads(g.read_text())
                people, sha = doc["people"], doc["model_sha256"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{g} is not an AtalaIA gallery ({type(e).__name__}: {e}); move it away to start "
                                "a new one") from None
            if sha != model_sha256:
                raise DataError(f"{g} was enrolled with another model (sha256 {sha[:12]}, this run's is "
                                f"{model_sha256[:12]}): templates of different models cannot be compared. "
                                "Re-enrol with this model (move the file away)")
        events = []
        if log.is_file():
            for k, line in enumerate(log.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    raise DataError(f"{log} line {k} is not JSON; fix or move the file away") from None
        n_t = 0
        for name, ts in people.items():
            if ts:
                self.add_templates(str(name), np.asarray(ts, np.float32))
                n_t += len(ts)
        for e in events:
            self.add_event({"time": _iso_from_legacy(e.get("time")), "door": "cli", "source": "import",
                            "kind": str(e.get("event", "check")), "person": e.get("person"),
                            "granted": e.get("granted"), "score": e.get("score"), "threshold": e.get("threshold"),
                            "reason": e.get("reason")})
        for f in (g, log):
            if f.is_file():
                f.unlink()
        self.set_meta("legacy_imported", now_iso())
        return {"people": len(people), "templates": n_t, "events": len(events)}


class _Query:
    """`q(sql, params)` on a cursor with `?` placeholders in every dialect."""

    def __init__(self, cur: Any, dialect: str) -> None:
        self._cur, self._pg = cur, dialect == "postgresql"

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._pg:
            sql = sql.replace("%", "%%").replace("?", "%s")
        self._cur.execute(sql, tuple(params))
        return self._cur


def _upsert_meta(q: Any, key: str, value: str) -> None:
    q("DELETE FROM meta WHERE key = ?", (key,))
    q("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))


def _bump(q: Any) -> None:
    row = q("SELECT value FROM meta WHERE key = ?", ("gallery_version",)).fetchone()
    _upsert_meta(q, "gallery_version", str(int(row[0]) + 1 if row else 1))


def _iso_from_legacy(t: Any) -> str:
    """The old log's local '%Y-%m-%dT%H:%M:%S%z' -> UTC '...Z' (kept as is when it does not parse)."""
    from datetime import datetime, timezone

    try:
        return datetime.strptime(str(t), "%Y-%m-%dT%H:%M:%S%z").astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return now_iso()


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


def open_store(db: str | None, state_dir: str | Path) -> Store:
    """`db` URL, or the default SQLite file `state_dir/access.db`."""
    if db:
        return Store(db)
    return Store(f"sqlite:///{Path(state_dir).resolve() / 'access.db'}")


__all__ = ["EVENT_COLUMNS", "MIGRATIONS", "Person", "Store", "now_iso", "open_store"]

"""SQLite storage for the service (through sqlite-utils): labelers, label tasks, answers, eval jobs and their reports.

- WAL mode, ``synchronous=FULL``: an answer is on disk before the HTTP response acknowledges it, so a restart (or a
  crash) loses nothing that a client was told succeeded.
- One connection per thread (sqlite3 connections must not cross threads): request handlers run their storage calls in
  worker threads (``sync_to_thread``), and each thread opens its own connection on first use.
- Writes that check-then-change (answering a task) run in ``BEGIN IMMEDIATE`` transactions, so two concurrent answers
  to the same task cannot both succeed.

Tokens are never stored: a labeler's row holds the sha256 of its token.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

SCHEMA_VERSION = 1


class StorageError(Exception):
    """Base class; the subclasses map to HTTP statuses in the service."""


class NotFound(StorageError):
    """The row does not exist (or belongs to someone else: a labeler cannot tell the two apart)."""


class Conflict(StorageError):
    """The change contradicts the current state (a name already taken, a task already answered)."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Labeler:
    id: int
    name: str


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class LabelTask:
    id: int
    labeler: str | None  # None: an unclaimed pool task
    info: dict[str, Any]
    summaries: list[dict[str, Any]]
    batch: str
    split: str
    created_at: float
    answer: dict[str, Any] | None


class Storage:
    """The service database. Safe to share between threads; each thread gets its own connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._create_schema()

    # -------------------------------------------------------------------------------------------- connections

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: autocommit, transactions only where we open them explicitly.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = self._connect()
            db = sqlite_utils.Database(conn)
            self._local.db = db
            with self._lock:
                self._all.append(conn)
        return db

    def close(self) -> None:
        """Close every connection this object opened (at shutdown; threads must be done using it)."""
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            try:
                c.close()
            except sqlite3.ProgrammingError:  # a connection made in another, still live thread
                pass
        self._local = threading.local()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: takes the write lock up front, so read-check-write sequences are atomic."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def ping(self) -> bool:
        return self.db.execute("SELECT 1").fetchone() == (1,)

    # -------------------------------------------------------------------------------------------- schema

    def _create_schema(self) -> None:
        db = self.db
        with self._write():
            db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
            db["labelers"].create(
                {"id": int, "name": str, "token_sha256": str, "created_at": float},
                pk="id",
                not_null={"name", "token_sha256", "created_at"},
                if_not_exists=True,
            )
            db["label_tasks"].create(
                {
                    "id": int,
                    "labeler_id": int,
                    "info": str,
                    "summaries": str,
                    "batch": str,
                    "split": str,
                    "created_at": float,
                    "answered": int,
                },
                pk="id",
                foreign_keys=[("labeler_id", "labelers", "id")],
                # labeler_id NULL: a pool task, claimed by the first labeler who asks for work (GET /v1/label/next)
                not_null={"info", "summaries", "batch", "split", "created_at", "answered"},
                defaults={"answered": 0},
                if_not_exists=True,
            )
            db["answers"].create(
                {
                    "task_id": int,
                    "labeler_id": int,
                    "choice": int,
                    "confidence": int,
                    "axes": str,
                    "note": str,
                    "answered_at": float,
                },
                pk="task_id",
                foreign_keys=[("task_id", "label_tasks", "id"), ("labeler_id", "labelers", "id")],
                not_null={"labeler_id", "choice", "confidence", "answered_at"},
                if_not_exists=True,
            )
            db["eval_jobs"].create(
                {
                    "id": str,
                    "status": str,
                    "spec": str,
                    "created_at": float,
                    "started_at": float,
                    "finished_at": float,
                    "error": str,
                    "out_dir": str,
                    "report": str,
                    "owner": str,
                },
                pk="id",
                not_null={"status", "spec", "created_at"},
                if_not_exists=True,
            )
            db["labelers"].create_index(["name"], unique=True, if_not_exists=True)
            db["labelers"].create_index(["token_sha256"], unique=True, if_not_exists=True)
            db["label_tasks"].create_index(["labeler_id", "answered", "id"], if_not_exists=True)
            db["eval_jobs"].create_index(["status"], if_not_exists=True)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            elif int(row[0]) > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} was written by a newer prefsum (schema {row[0]} > {SCHEMA_VERSION}); upgrade "
                    "prefsum or point --db at another file"
                )

    # -------------------------------------------------------------------------------------------- labelers

    def create_labeler(self, name: str) -> tuple[Labeler, str]:
        """A new labeler and its token (returned once; only its hash is kept)."""
        token = new_token()
        try:
            with self._write() as conn:
                cur = conn.execute(
                    "INSERT INTO labelers(name, token_sha256, created_at) VALUES (?, ?, ?)",
                    [name, token_hash(token), time.time()],
                )
        except sqlite3.IntegrityError:
            raise Conflict(f"a labeler named {name!r} already exists; pick another name") from None
        return Labeler(int(cur.lastrowid), name), token

    def labeler_by_token(self, token: str) -> Labeler | None:
        row = self.db.execute("SELECT id, name FROM labelers WHERE token_sha256 = ?", [token_hash(token)]).fetchone()
        return Labeler(row[0], row[1]) if row else None

    def labeler_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Name -> id for the given names; raises NotFound naming the first unknown one."""
        out: dict[str, int] = {}
        for name in dict.fromkeys(names):
            row = self.db.execute("SELECT id FROM labelers WHERE name = ?", [name]).fetchone()
            if row is None:
                raise NotFound(f"no labeler named {name!r}; create it first with POST /v1/labelers")
            out[name] = row[0]
        return out

    def list_labelers(self) -> list[tuple[Labeler, Progress]]:
        """Every labeler with the progress on its own (assigned or claimed) tasks."""
        rows = self.db.execute(
            "SELECT l.id, l.name, COALESCE(SUM(t.answered), 0), COUNT(t.id) FROM labelers l "
            "LEFT JOIN label_tasks t ON t.labeler_id = l.id GROUP BY l.id ORDER BY l.name"
        ).fetchall()
        return [(Labeler(r[0], r[1]), Progress(int(r[2]), int(r[3]))) for r in rows]

    def pool_size(self) -> int:
        """Pool tasks nobody has claimed yet."""
        return int(self.db.execute("SELECT COUNT(*) FROM label_tasks WHERE labeler_id IS NULL").fetchone()[0])

    def progress(self, labeler_id: int) -> Progress:
        """Answered / (own tasks + unclaimed pool tasks this labeler could still be given)."""
        done, own = self.db.execute(
            "SELECT COALESCE(SUM(answered), 0), COUNT(*) FROM label_tasks WHERE labeler_id = ?", [labeler_id]
        ).fetchone()
        return Progress(int(done), int(own) + self.pool_size())

    # -------------------------------------------------------------------------------------------- label tasks

    def add_tasks(self, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Queue tasks: each dict has labeler_id (None: the shared pool), info, summaries, batch, split. Returns the
        new ids, in order."""
        now = time.time()
        ids: list[int] = []
        with self._write() as conn:
            for t in tasks:
                cur = conn.execute(
                    "INSERT INTO label_tasks(labeler_id, info, summaries, batch, split, created_at, answered) "
                    "VALUES (?, ?, ?, ?, ?, ?, 0)",
                    [
                        t["labeler_id"],
                        json.dumps(t["info"], ensure_ascii=False),
                        json.dumps(t["summaries"], ensure_ascii=False),
                        t["batch"],
                        t["split"],
                        now,
                    ],
                )
                ids.append(int(cur.lastrowid))
        return ids

    _TASK_SELECT = (
        "SELECT t.id, l.name, t.info, t.summaries, t.batch, t.split, t.created_at, "
        "a.choice, a.confidence, a.axes, a.note, a.answered_at "
        "FROM label_tasks t LEFT JOIN labelers l ON l.id = t.labeler_id LEFT JOIN answers a ON a.task_id = t.id "
    )

    @staticmethod
    def _task(row: Sequence[Any]) -> LabelTask:
        answer = None
        if row[7] is not None:
            answer = {
                "choice": row[7],
                "confidence": row[8],
                "axes": json.loads(row[9]) if row[9] else None,
                "note": row[10],
                "answered_at": row[11],
            }
        return LabelTask(
            id=row[0],
            labeler=row[1],
            info=json.loads(row[2]),
            summaries=json.loads(row[3]),
            batch=row[4],
            split=row[5],
            created_at=row[6],
            answer=answer,
        )

    def next_task(self, labeler_id: int) -> LabelTask | None:
        """The labeler's oldest unanswered task; when it has none, it claims the oldest unclaimed pool task (from
        then on that task is its own and nobody else's)."""
        own = self._TASK_SELECT + "WHERE t.labeler_id = ? AND t.answered = 0 ORDER BY t.id LIMIT 1"
        row = self.db.execute(own, [labeler_id]).fetchone()
        if row is None:
            with self._write() as conn:
                pool = conn.execute(
                    "SELECT id FROM label_tasks WHERE labeler_id IS NULL ORDER BY id LIMIT 1"
                ).fetchone()
                if pool is None:
                    return None
                conn.execute("UPDATE label_tasks SET labeler_id = ? WHERE id = ?", [labeler_id, pool[0]])
            row = self.db.execute(own, [labeler_id]).fetchone()
        return self._task(row) if row else None

    def get_task(self, task_id: int, labeler_id: int | None) -> LabelTask:
        """A task by id; with ``labeler_id`` only that labeler's (another's task is NotFound, like a missing one)."""
        _check_id(task_id)
        sql, args = self._TASK_SELECT + "WHERE t.id = ?", [task_id]
        if labeler_id is not None:
            sql, args = sql + " AND t.labeler_id = ?", [task_id, labeler_id]
        row = self.db.execute(sql, args).fetchone()
        if row is None:
            raise NotFound(f"no label task {task_id} for this labeler")
        return self._task(row)

    def answer(
        self,
        task_id: int,
        labeler_id: int,
        *,
        choice: int,
        confidence: int,
        axes: list[dict[str, int | None] | None] | None,
        note: str | None,
    ) -> None:
        """Record an answer; NotFound if the task is not this labeler's, Conflict if it was answered already."""
        _check_id(task_id)
        with self._write() as conn:
            row = conn.execute(
                "SELECT answered FROM label_tasks WHERE id = ? AND labeler_id = ?", [task_id, labeler_id]
            ).fetchone()
            if row is None:
                raise NotFound(f"no label task {task_id} for this labeler")
            if row[0]:
                raise Conflict(f"label task {task_id} is already answered; answers are final")
            conn.execute(
                "INSERT INTO answers(task_id, labeler_id, choice, confidence, axes, note, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [task_id, labeler_id, choice, confidence, json.dumps(axes) if axes else None, note, time.time()],
            )
            conn.execute("UPDATE label_tasks SET answered = 1 WHERE id = ?", [task_id])

    def answered_tasks(self) -> Iterator[LabelTask]:
        """Every answered task, oldest answer first (for the export)."""
        for row in self.db.execute(self._TASK_SELECT + "WHERE t.answered = 1 ORDER BY a.answered_at, t.id"):
            yield self._task(row)

    # -------------------------------------------------------------------------------------------- eval jobs

    def create_eval_job(self, spec: dict[str, Any], owner: str, max_active: int) -> str | None:
        """A queued job's id, or None when ``max_active`` jobs are already queued or running."""
        job_id = uuid.uuid4().hex
        with self._write() as conn:
            (active,) = conn.execute("SELECT COUNT(*) FROM eval_jobs WHERE status IN ('queued', 'running')").fetchone()
            if active >= max_active:
                return None
            conn.execute(
                "INSERT INTO eval_jobs(id, status, spec, created_at, owner) VALUES (?, 'queued', ?, ?, ?)",
                [job_id, json.dumps(spec), time.time(), owner],
            )
        return job_id

    def eval_job(self, job_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT id, status, spec, created_at, started_at, finished_at, error, out_dir, report FROM eval_jobs "
            "WHERE id = ?",
            [job_id],
        ).fetchone()
        if row is None:
            raise NotFound(f"no eval job {job_id!r}")
        return {
            "id": row[0],
            "status": row[1],
            "spec": json.loads(row[2]),
            "created_at": row[3],
            "started_at": row[4],
            "finished_at": row[5],
            "error": row[6],
            "out_dir": row[7],
            "report": json.loads(row[8]) if row[8] else None,
        }

    def list_eval_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        ids = [r[0] for r in self.db.execute("SELECT id FROM eval_jobs ORDER BY created_at DESC LIMIT ?", [limit])]
        return [self.eval_job(i) for i in ids]

    def start_eval_job(self, job_id: str, owner: str, out_dir: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE eval_jobs SET status = 'running', started_at = ?, out_dir = ? "
                "WHERE id = ? AND status = 'queued' AND owner = ?",
                [time.time(), out_dir, job_id, owner],
            )
        return cur.rowcount == 1

    def finish_eval_job(self, job_id: str, *, report: dict[str, Any] | None, error: str | None) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE eval_jobs SET status = ?, finished_at = ?, report = ?, error = ? WHERE id = ?",
                [
                    "failed" if error else "done",
                    time.time(),
                    json.dumps(report, default=str) if report is not None else None,
                    error,
                    job_id,
                ],
            )

    def reclaim_eval_jobs(self, owner: str) -> list[str]:
        """Jobs left queued or running by a process that is gone: take them over (back to 'queued', owned by
        ``owner``) and return their ids, oldest first. Owners are "pid:boot-id" strings."""
        taken = []
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, owner FROM eval_jobs WHERE status IN ('queued', 'running') ORDER BY created_at"
            ).fetchall()
            for job_id, old in rows:
                if old != owner and _owner_alive(old):
                    continue
                conn.execute(
                    "UPDATE eval_jobs SET status = 'queued', owner = ?, started_at = NULL WHERE id = ?",
                    [owner, job_id],
                )
                taken.append(job_id)
        return taken

    # -------------------------------------------------------------------------------------------- meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None


def _check_id(task_id: int) -> None:
    # SQLite integers are 64-bit: a larger id from a client cannot exist (and must not reach the driver).
    if not 0 < task_id < 2**63:
        raise NotFound(f"no label task {task_id}")


_BOOT = uuid.uuid4().hex[:12]


def process_owner() -> str:
    """This process's owner tag for eval jobs: pid plus a random id chosen at import (pids get reused)."""
    return f"{os.getpid()}:{_BOOT}"


def _owner_alive(owner: str | None) -> bool:
    """Is the process that owns a job still running? (Same machine; a reused pid with another boot id is not.)"""
    if not owner or ":" not in owner:
        return False
    pid_s, boot = owner.split(":", 1)
    if not pid_s.isdigit():
        return False
    pid = int(pid_s)
    if pid == os.getpid():
        return boot == _BOOT
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

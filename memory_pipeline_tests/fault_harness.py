"""Faults injected into a running ``memory-pipeline up``, and what the stores say afterwards.

Used by ``test_faults.py`` and, as ``python -m memory_pipeline_tests.fault_harness``, to measure
a table of every fault (rows lost, duplicated, stuck; time to recover) against any checkout.
It talks to the home only through the CLI, SQL and Chroma's HTTP API, so the same cases run
against older code too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from memory_pipeline.local_services.local_chroma import _free_port, running_local_chroma
from memory_pipeline.local_services.local_postgres import local_postgres_uri
from memory_pipeline.tenancy import shard_collection_name

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TERMINAL = ("embedded", "skipped", "dead")
READY_SECONDS = 300.0
#: Rows per tenant of a case: enough that a batch takes a moment to embed, few for a quick suite.
ROWS_PER_TENANT = 60
#: Words the rows are made of: long enough texts that a batch takes a moment to embed.
WORDS = [
    "pool",
    "index",
    "vector",
    "tenant",
    "claim",
    "batch",
    "sensor",
    "run",
    "worker",
    "chroma",
    "postgres",
    "embed",
    "search",
    "retry",
    "backoff",
    "lock",
    "commit",
    "rollback",
    "update",
    "delete",
    "memory",
    "agent",
    "lesson",
    "summary",
    "cause",
]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (psycopg.Error, OSError) as exc:  # a store restarting: ask again
            last_error, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout:.0f} s (last error: {last_error})")


def text_of(seed: int, words: int = 120) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


# ------------------------------------------------------------------------------- the home
@dataclass
class Home:
    """A temporary home (short path: Unix socket limit) and the environment of its processes."""

    path: Path
    env: dict[str, str]

    @classmethod
    def create(cls, **extra_env: str) -> Home:
        path = Path(tempfile.mkdtemp(prefix="mpf-", dir="/tmp"))
        env = {
            **os.environ,
            "MEMORY_PIPELINE_HOME": str(path),
            "MEMORY_PIPELINE_SENSOR_INTERVAL_SECONDS": "1",
            "MEMORY_PIPELINE_RETRY_BACKOFF_SECONDS": "1",
            "MEMORY_PIPELINE_MAX_ATTEMPTS": "3",
            "MEMORY_PIPELINE_RUN_RETRY_BACKOFF_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        for name in ("MEMORY_PIPELINE_DATABASE_URL", "MEMORY_PIPELINE_CHROMA_HOST", "DAGSTER_HOME"):
            env.pop(name, None)
        return cls(path, env)

    @property
    def database_url(self) -> str | None:
        return local_postgres_uri(self.path / "pg")

    def connect(self) -> psycopg.Connection:
        url = self.database_url
        if url is None:
            raise psycopg.OperationalError("the home's PostgreSQL is not running")
        return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=5)

    def sql(self, query: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def postgres_pid(self) -> int | None:
        try:
            return int((self.path / "pg" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def chroma(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        info = running_local_chroma(self.path / "chroma")
        if info is None:
            raise OSError("the home's Chroma server is not running")
        return chromadb.HttpClient(
            host=info.host, port=info.port, settings=ChromaSettings(anonymized_telemetry=False)
        )

    def chroma_pid(self) -> int | None:
        try:
            return int(json.loads((self.path / "chroma" / "server.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memory_pipeline.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


# ------------------------------------------------------------------------------------- up
@functools.cache
def _up_has_a_service() -> bool:
    """Whether this checkout's `up` starts the memory service (older ones have no such port)."""
    helped = subprocess.run(
        [sys.executable, "-m", "memory_pipeline.cli", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "--service-port" in helped.stdout


@dataclass
class Up:
    """A running ``memory-pipeline up`` of a home."""

    home: Home
    port: int
    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    #: When it was started (UTC, naive: as Dagster's run table stores times).
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))

    @classmethod
    def start(cls, home: Home) -> Up:
        port = _free_port("127.0.0.1")
        command = [sys.executable, "-m", "memory_pipeline.cli", "up", "--port", str(port)]
        if _up_has_a_service():
            command += ["--service-port", str(_free_port("127.0.0.1"))]
        proc = subprocess.Popen(
            command,
            env=home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        up = cls(home, port, proc)
        threading.Thread(target=up._read_output, daemon=True).start()
        wait_for(
            lambda: any("Dagster UI" in line for line in up.output) or up._exited(),
            READY_SECONDS,
            "`up` announcing the UI",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"`up` exited: {''.join(up.output)}")
        return up

    def _read_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def _exited(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"`up` exited with {self.proc.returncode}: {''.join(self.output)}")
        return False

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def run_workers(self) -> list[psutil.Process]:
        """The processes executing Dagster runs: children the code server (``dagster api
        grpc``) spawns for each run."""
        workers = []
        for p in self.descendants():
            with contextlib.suppress(psutil.Error):
                line = " ".join(p.cmdline())
                parent = " ".join(p.parent().cmdline()) if p.parent() else ""
                if ("spawn_main" in line and "grpc" in parent) or "execute_run" in line:
                    workers.append(p)
        return workers

    def process_tree(self) -> str:
        lines = []
        for p in self.descendants():
            with contextlib.suppress(psutil.Error):
                lines.append(f"{p.pid} (parent {p.ppid()}): {' '.join(p.cmdline())[:150]}")
        return "\n".join(lines)

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM, as an operator's Ctrl-C; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode if self.proc.returncode is not None else -9)

    def kill(self) -> None:
        """Kill `up` and everything under it (cleanup after a failed test)."""
        procs = [*self.descendants()]
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self.proc.wait()


# ---------------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class Tenant:
    user_id: str
    project_id: str


def insert_rows(home: Home, tenant: Tenant, count: int, seed: int = 0) -> list[int]:
    """``count`` work-log rows of ``tenant``, inserted by SQL as an application would."""
    with home.connect() as conn:
        rows = conn.execute(
            """INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data)
               SELECT %s, %s, '', x FROM unnest(%s::jsonb[]) AS x RETURNING id""",
            (
                tenant.user_id,
                tenant.project_id,
                [
                    Jsonb(
                        {
                            "task": f"task {seed}-{i}",
                            "summary": text_of(seed * 100_000 + i),
                            "lesson": text_of(seed * 100_000 + i + 7, 20),
                        }
                    )
                    for i in range(count)
                ],
            ),
        ).fetchall()
    return [int(r["id"]) for r in rows]


def states(home: Home, ids: Sequence[int]) -> dict[int, str]:
    rows = home.sql("SELECT id, status FROM memory_log WHERE id = ANY(%s)", (list(ids),))
    return {int(r["id"]): r["status"] for r in rows}


def unfinished(home: Home, ids: Sequence[int]) -> list[int]:
    """The ids (of those still present) not in a terminal state."""
    return sorted(i for i, s in states(home, ids).items() if s not in TERMINAL)


def wait_until_terminal(home: Home, ids: Sequence[int], timeout: float) -> float:
    """Seconds until every present id is terminal; raises ``TimeoutError`` listing the rest."""
    start = time.monotonic()
    try:
        wait_for(lambda: not unfinished(home, ids), timeout, "every row terminal", 0.5)
    except TimeoutError:
        try:
            left: Sequence[int] | str = unfinished(home, ids)
        except (psycopg.Error, OSError) as exc:
            left = f"the database is unreachable ({type(exc).__name__})"
        raise TimeoutError(f"rows not terminal after {timeout:.0f} s: {left!s:.200}") from None
    return time.monotonic() - start


def a_run_holds_rows(home: Home) -> bool:
    """Whether some other session holds claimed rows (a batch in flight): a transaction that
    locked rows (``FOR UPDATE`` assigns it an xid) and is still open."""
    rows = home.sql(
        """SELECT count(*) AS n FROM pg_stat_activity
           WHERE datname = current_database() AND pid <> pg_backend_pid()
             AND backend_xid IS NOT NULL AND query ILIKE '%%memory_log%%'"""
    )
    return rows[0]["n"] > 0


# ----------------------------------------------------------------------------- agreement
@dataclass
class Agreement:
    """How Postgres, pgvector and Chroma compare for some tenants."""

    lost: list[int] = field(default_factory=list)  # embedded rows missing a vector somewhere
    duplicated: list[str] = field(default_factory=list)  # vector ids held twice
    foreign: list[str] = field(default_factory=list)  # vectors in a collection not the tenant's
    stale: list[str] = field(default_factory=list)  # vectors of rows not embedded (or deleted)
    #: Second-stage vectors compared (0 without a rerank model): the check was not vacuous.
    second_stage_vectors: int = 0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.foreign or self.stale)


def _pgvector_ids(home: Home, tenant_key: str, model_id: str, out: Agreement) -> set[str]:
    """The tenant's rows' vector ids of ``model_id`` in pgvector; duplicates and vectors filed
    under another tenant go to ``out``."""
    pg = home.sql(
        """SELECT vector_id, count(*) AS n, bool_and(tenant_key = %s) AS own
           FROM memory_vector WHERE log_id IN (
               SELECT id FROM memory_log WHERE tenant_key = %s)
             AND embedding_model = %s GROUP BY vector_id""",
        (tenant_key, tenant_key, model_id),
    )
    out.duplicated += [r["vector_id"] for r in pg if r["n"] > 1]
    out.foreign += [r["vector_id"] for r in pg if not r["own"]]
    return {r["vector_id"] for r in pg}


def agreement(home: Home, tenants: Sequence[Tenant]) -> Agreement:
    """Compare, per tenant, the vector id sets of pgvector and Chroma with the embedded rows;
    with a rerank model configured, also its pgvector ids (it has no Chroma copy)."""
    out = Agreement()
    client = home.chroma()
    second = home.env.get("MEMORY_PIPELINE_RERANK_MODEL") or None
    for t in tenants:
        rows = home.sql(
            """SELECT m.id, m.status, m.chunk_count, m.tenant_key FROM memory_log m
               WHERE m.user_id = %s AND m.project_id = %s""",
            (t.user_id, t.project_id),
        )
        key = home.sql(
            "SELECT tenant_key, shard FROM memory_tenant WHERE user_id = %s AND project_id = %s",
            (t.user_id, t.project_id),
        )
        if not key:
            continue
        tenant_key, shard = key[0]["tenant_key"], key[0]["shard"]
        expected = {
            str(r["id"]) if n == 0 else f"{r['id']}#{n}"
            for r in rows
            if r["status"] == "embedded"
            for n in range(r["chunk_count"])
        }
        pg_ids = _pgvector_ids(home, tenant_key, MODEL_ID, out)
        try:
            if shard is None:
                collection = client.get_collection(f"memory_logs_{tenant_key}")
                got = collection.get(include=["metadatas"])
            else:  # a shard's collection: the tenant's own vectors among its neighbours'
                collection = client.get_collection(shard_collection_name(shard, MODEL_ID))
                got = collection.get(where={"tenant_key": tenant_key}, include=["metadatas"])
            chroma_ids = list(got["ids"])
            out.foreign += [
                vid
                for vid, meta in zip(got["ids"], got["metadatas"], strict=True)
                if (meta or {}).get("user_id") != t.user_id
                or (meta or {}).get("project_id") != t.project_id
            ]
        except Exception:  # no collection yet
            chroma_ids = []
        out.duplicated += sorted({v for v in chroma_ids if chroma_ids.count(v) > 1})
        lost_ids = (expected - pg_ids) | (expected - set(chroma_ids))
        stale_ids = (pg_ids | set(chroma_ids)) - expected
        if second is not None:  # the same expectations of the second vector set
            second_ids = _pgvector_ids(home, tenant_key, second, out)
            out.second_stage_vectors += len(second_ids)
            lost_ids |= expected - second_ids
            stale_ids |= second_ids - expected
        out.lost += sorted({int(v.split("#")[0]) for v in lost_ids})
        out.stale += sorted(stale_ids)
    return out


# ------------------------------------------------------------------------------ measuring
@dataclass
class Outcome:
    """One fault case: what was lost, duplicated or stuck, and how long recovery took."""

    case: str
    rows: int
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    stale: int = 0  # vectors of deleted or not-embedded rows still in a store
    second_stage_vectors: int = 0  # second-stage vectors compared (a rerank model configured)
    recover_seconds: float | None = None
    note: str = ""

    @property
    def clean(self) -> bool:
        """Every row terminal, nothing lost or duplicated, the stores agree."""
        return (self.lost, self.duplicated, self.stuck, self.stale) == (0, 0, 0, 0) and (
            self.recover_seconds is not None
        )

    def line(self) -> str:
        took = f"{self.recover_seconds:.0f} s" if self.recover_seconds is not None else "never"
        return (
            f"| {self.case} | {self.rows} | {self.lost} | {self.duplicated} | {self.stuck} "
            f"| {self.stale} | {took} | {self.note} |"
        )


def outcome_of(
    home: Home,
    case: str,
    tenants: Sequence[Tenant],
    ids: Sequence[int],
    fault_at: float,
    timeout: float,
    note: str = "",
) -> Outcome:
    """Wait (up to ``timeout``) for every row to be terminal, then compare the stores."""
    out = Outcome(case, len(ids), note=note)
    try:
        wait_until_terminal(home, ids, timeout)
        out.recover_seconds = time.monotonic() - fault_at
    except TimeoutError:
        pass
    try:
        out.stuck = len(unfinished(home, ids))
        present = states(home, ids)
        agree = agreement(home, tenants)
        out.lost = len(set(agree.lost)) + sum(1 for i in ids if i not in present)
        out.duplicated = len(agree.duplicated) + len(agree.foreign)
        out.stale = len(agree.stale)
        out.second_stage_vectors = agree.second_stage_vectors
    except (psycopg.Error, OSError) as exc:
        out.stuck = len(ids)
        out.note = f"{note} stores unreachable: {type(exc).__name__}".strip()
    return out


@contextlib.contextmanager
def running_up(home: Home) -> Iterator[Up]:
    up = Up.start(home)
    try:
        yield up
    finally:
        if up.proc.poll() is None:
            up.stop()
        up.kill()


def kill_pid(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_postgres(home: Home) -> None:
    """kill -9 of the postmaster (its backends notice and exit)."""
    pid = home.postgres_pid()
    kill_pid(pid)
    if pid is not None:
        wait_for(lambda: not psutil.pid_exists(pid), 30, "the postmaster gone")


# ---------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """A fault case: ``run(home, up, timeout)`` injects its fault and returns the outcome.

    ``run`` may replace the ``up`` it was given (``holder[0]``), as the SIGTERM case does.
    """

    name: str
    run: Callable[[Home, list[Up], float], Outcome]


def _tenants(tag: str, n: int) -> list[Tenant]:
    suffix = f"{time.time_ns() % 10**9:09d}"
    return [Tenant(f"{tag}-{suffix}-{i}", f"proj-{suffix}") for i in range(n)]


def _seed(home: Home, tenants: Sequence[Tenant], per_tenant: int) -> list[int]:
    ids: list[int] = []
    for n, t in enumerate(tenants):
        ids += insert_rows(home, t, per_tenant, seed=hash(t.user_id) % 1000 + n)
    return ids


def _mid_batch(home: Home, timeout: float = 240) -> None:
    wait_for(lambda: a_run_holds_rows(home), timeout, "a run holding claimed rows", 0.05)


def case_run_worker_killed(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("worker", 2)
    ids = _seed(home, tenants, ROWS_PER_TENANT)
    _mid_batch(home)
    try:
        workers = wait_for(holder[0].run_workers, 30, "a run worker")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; processes: {holder[0].process_tree()}") from None
    for w in workers:
        kill_pid(w.pid)
    fault_at = time.monotonic()
    return outcome_of(home, "kill -9 of the run worker mid-batch", tenants, ids, fault_at, timeout)


def case_chroma_killed(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("chroma", 2)
    ids = _seed(home, tenants, ROWS_PER_TENANT)
    _mid_batch(home)
    kill_pid(home.chroma_pid())
    fault_at = time.monotonic()
    return outcome_of(home, "kill -9 of Chroma mid-run", tenants, ids, fault_at, timeout)


def case_postgres_killed_mid_run(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("pgrun", 2)
    ids = _seed(home, tenants, ROWS_PER_TENANT)
    _mid_batch(home)
    kill_postgres(home)
    fault_at = time.monotonic()
    return outcome_of(home, "kill -9 of Postgres mid-run", tenants, ids, fault_at, timeout)


def case_postgres_killed_idle(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("pgidle", 2)
    wait_for(lambda: not holder[0].run_workers(), 240, "no run in progress")
    kill_postgres(home)
    fault_at = time.monotonic()
    try:  # new rows as soon as the database takes them again
        ids = wait_for(lambda: _seed(home, tenants, 20), timeout, "Postgres back", 0.5)
    except TimeoutError:
        return Outcome("kill -9 of Postgres while idle", 40, stuck=40, note="Postgres never back")
    return outcome_of(home, "kill -9 of Postgres while idle", tenants, ids, fault_at, timeout)


def case_up_terminated(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("sigterm", 2)
    ids = _seed(home, tenants, ROWS_PER_TENANT)
    _mid_batch(home)
    holder[0].stop()
    holder[0] = Up.start(home)
    fault_at = time.monotonic()
    return outcome_of(
        home, "SIGTERM of `up` mid-run, then `up` again", tenants, ids, fault_at, timeout
    )


def case_process_calls_and_sensor(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("overlap", 2)
    ids = _seed(home, tenants, 100)
    fault_at = time.monotonic()
    calls = [
        subprocess.Popen(
            [sys.executable, "-m", "memory_pipeline.cli", "process", "--json"],
            env=home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errors = []
    for c in calls:
        _, err = c.communicate(timeout=timeout)
        if c.returncode != 0:
            errors.append(err.strip().splitlines()[-1:] or [""])
    note = f"process failed: {errors}" if errors else ""
    return outcome_of(
        home, "two `process` calls + the sensor", tenants, ids, fault_at, timeout, note
    )


def case_concurrent_writers(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("writers", 4)
    ids: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def writer(n: int) -> None:
        t = tenants[n % len(tenants)]
        start.wait()
        with home.connect() as conn, conn.transaction():
            for i in range(5):  # a transaction held open across its inserts
                row = conn.execute(
                    "INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data) "
                    "VALUES (%s, %s, '', %s) RETURNING id",
                    (t.user_id, t.project_id, Jsonb({"content": text_of(n * 10 + i, 30)})),
                ).fetchone()
                with lock:
                    ids.append(int(row["id"]))
                time.sleep(0.3 + 0.1 * (n % 5))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(20)]
    fault_at = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcome_of(
        home, "20 concurrent writers, long-open transactions", tenants, ids, fault_at, timeout
    )


def case_updates_and_deletes(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("churn", 2)
    ids = _seed(home, tenants, ROWS_PER_TENANT)
    _mid_batch(home)
    fault_at = time.monotonic()
    updated, deleted = ids[::10], ids[5::10]
    with home.connect() as conn:
        for i in updated:
            conn.execute(
                "UPDATE memory_log SET raw_data = %s WHERE id = %s",
                (Jsonb({"content": f"changed text zebra {i}"}), i),
            )
        conn.execute("DELETE FROM memory_log WHERE id = ANY(%s)", (deleted,))
    left = [i for i in ids if i not in set(deleted)]
    out = outcome_of(home, "updates and deletes during a run", tenants, left, fault_at, timeout)
    texts = home.sql(
        "SELECT id, search_text FROM memory_log WHERE id = ANY(%s) AND status = 'embedded'",
        (updated,),
    )
    old_text = [r["id"] for r in texts if "zebra" not in (r["search_text"] or "")]
    if old_text:
        out.lost += len(old_text)
        out.note = f"{len(old_text)} updated rows kept their old text"
    return out


DEEP_LEVELS = 10_000


def case_hostile_rows(home: Home, holder: list[Up], timeout: float) -> Outcome:
    tenants = _tenants("hostile", 3)
    ids = _seed(home, tenants, 20)
    refused = False
    with home.connect() as conn:
        deep = _insert_raw(conn, tenants[1], '{"a": ' + "[" * DEEP_LEVELS + "]" * DEEP_LEVELS + "}")
        huge = _insert_raw(conn, tenants[1], json.dumps({"content": "x" * 5_000_000}))
        empty = _insert_raw(conn, tenants[2], "{}")
        try:
            _insert_raw(conn, tenants[0], "[1, 2]")
        except psycopg.errors.CheckViolation:
            refused = True
    fault_at = time.monotonic()
    out = outcome_of(
        home,
        "hostile rows beside normal rows",
        tenants,
        [*ids, deep, huge, empty],
        fault_at,
        timeout,
    )
    wrong = []
    if not refused:
        wrong.append("a non-object raw_data was accepted")
    for name, log_id in (("deep", deep), ("5 MB", huge), ("empty", empty)):
        row = home.sql("SELECT status, last_error FROM memory_log WHERE id = %s", (log_id,))
        if not row or row[0]["status"] != "skipped" or not row[0]["last_error"]:
            wrong.append(f"the {name} row is {row[0]['status'] if row else 'gone'}")
    normal = states(home, ids)
    if set(normal.values()) != {"embedded"}:
        wrong.append("normal rows not embedded")
    if wrong:
        out.lost += len(wrong)
        out.note = "; ".join(wrong)
    return out


def _insert_raw(conn: psycopg.Connection, tenant: Tenant, raw_json: str) -> int:
    row = conn.execute(
        "INSERT INTO memory_log (user_id, project_id, tenant_key, raw_data) "
        "VALUES (%s, %s, '', %s::jsonb) RETURNING id",
        (tenant.user_id, tenant.project_id, raw_json),
    ).fetchone()
    return int(row["id"])


CASES = [
    Case("run_worker_killed", case_run_worker_killed),
    Case("chroma_killed", case_chroma_killed),
    Case("postgres_killed_mid_run", case_postgres_killed_mid_run),
    Case("postgres_killed_idle", case_postgres_killed_idle),
    Case("process_calls_and_sensor", case_process_calls_and_sensor),
    Case("concurrent_writers", case_concurrent_writers),
    Case("updates_and_deletes", case_updates_and_deletes),
    Case("hostile_rows", case_hostile_rows),
    Case("up_terminated", case_up_terminated),
]


def measure(names: Sequence[str], timeout: float, fresh_up_per_case: bool) -> list[Outcome]:
    """Run the cases (each in a fresh home and `up` when ``fresh_up_per_case``); print a table."""
    outcomes: list[Outcome] = []
    print(
        "| fault | rows | lost | duplicated | stuck | stale vectors | recovered after | note |",
        flush=True,
    )
    print("|---|---|---|---|---|---|---|---|", flush=True)
    home = Home.create()
    holder: list[Up] = []
    try:
        for case in (c for c in CASES if not names or c.name in names):
            if fresh_up_per_case or not holder:
                if holder:
                    holder[0].stop()
                    holder[0].kill()
                    home.cli("db", "stop", timeout=120)
                    shutil.rmtree(home.path, ignore_errors=True)
                    home = Home.create()
                holder[:] = [Up.start(home)]
            try:
                out = case.run(home, holder, timeout)
            except Exception as exc:  # a case that could not even inject its fault
                out = Outcome(case.name, 0, note=f"{type(exc).__name__}: {str(exc)[:120]}")
            outcomes.append(out)
            print(out.line(), flush=True)
    finally:
        for up in holder:
            up.stop()
            up.kill()
        home.cli("db", "stop", timeout=120)
        shutil.rmtree(home.path, ignore_errors=True)
    return outcomes


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="measure the fault table")
    parser.add_argument("cases", nargs="*")
    parser.add_argument("--timeout", type=float, default=150)
    parser.add_argument("--shared-up", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up the home on SIGTERM too
    measure(args.cases, args.timeout, fresh_up_per_case=not args.shared_up)

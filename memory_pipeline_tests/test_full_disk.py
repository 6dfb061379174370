"""A full disk is an error, not a loss (issue 25): with the home on size-limited tmpfs mounts
(the home, and Chroma's folder on its own), each case fills a file system to its last byte
during real work under `memory-pipeline up`, checks what was refused and how it said so, then
frees the space and waits, with no one's help, until every row is embedded once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from memory_pipeline_tests.fault_harness import (
    Home,
    Tenant,
    Up,
    _mid_batch,
    agreement,
    insert_rows,
    states,
    wait_for,
    wait_until_terminal,
)
from memory_pipeline_tests.test_faults import CASE_TIMEOUT_SECONDS

pytestmark = pytest.mark.e2e

HOME_SIZE = "600m"  # Postgres (with its WAL), Dagster's files, the service's key
CHROMA_SIZE = "160m"
CHUNK = 1 << 20


def _mount_tmpfs(path: Path, size: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs (needs root): {done.stderr.strip()}")


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@dataclass
class Filler:
    """A file that takes a file system's free space to its last byte, and gives it back."""

    path: Path

    def fill(self) -> int:
        written = 0
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (CHUNK, 4096, 1):
                block = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, block)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def full(self) -> bool:
        return os.statvfs(self.path.parent).f_bavail == 0


@dataclass
class FullDiskHome:
    home: Home
    up: Up
    home_disk: Filler
    chroma_disk: Filler
    service_url: str
    admin_key: str


@pytest.fixture(scope="module")
def full_disk_home() -> Iterator[FullDiskHome]:
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    home = Home.create()
    _mount_tmpfs(home.path, HOME_SIZE)
    chroma = home.path / "chroma"
    chroma.mkdir()
    _mount_tmpfs(chroma, CHROMA_SIZE)
    up = None
    try:
        up = Up.start(home)
        line = wait_for(
            lambda: next((s for s in up.output if "Memory service" in s), None),
            120,
            "`up` announcing the memory service",
        )
        service_url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        admin_key = (home.path / "service" / "admin.key").read_text().strip()
        yield FullDiskHome(
            home,
            up,
            Filler(home.path / "filler"),
            Filler(chroma / "filler"),
            service_url,
            admin_key,
        )
    finally:
        for filler in (home.path / "filler", chroma / "filler"):
            filler.unlink(missing_ok=True)
        if up is not None:
            up.stop()
            up.kill()
        home.cli("db", "stop", timeout=120)
        _umount(chroma)
        _umount(home.path)
        with contextlib.suppress(OSError):
            home.path.rmdir()


@pytest.fixture
def freed(full_disk_home) -> Iterator[FullDiskHome]:
    """Whatever a case asserts, it leaves the disks free for the next."""
    try:
        yield full_disk_home
    finally:
        full_disk_home.home_disk.free()
        full_disk_home.chroma_disk.free()


def _tenant(tag: str) -> Tenant:
    return Tenant(f"{tag}-{time.time_ns() % 10**9:09d}", "full-disk")


def _database_answers(home: Home) -> bool:
    try:
        home.sql("SELECT 1")
        return True
    except (psycopg.Error, OSError):
        return False


def _ids_of(home: Home, tenant: Tenant) -> list[int]:
    rows = home.sql(
        "SELECT id FROM memory_log WHERE user_id = %s AND project_id = %s ORDER BY id",
        (tenant.user_id, tenant.project_id),
    )
    return [int(r["id"]) for r in rows]


def _all_embedded_once(home: Home, tenants: list[Tenant], ids: list[int]) -> None:
    wait_until_terminal(home, ids, CASE_TIMEOUT_SECONDS)
    assert set(states(home, ids).values()) == {"embedded"}
    agree = agreement(home, tenants)
    assert agree.ok, agree


def _error_line(stderr: str) -> str:
    """The one line a CLI verb's failure prints (after any progress bar), never a traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("memory-pipeline ")]
    assert len(errors) == 1 and stderr.strip().endswith(errors[0]), stderr
    return errors[0]


def _import_file(path: Path, tenant: Tenant, count: int) -> None:
    with path.open("w") as f:
        for i in range(count):
            record = {
                "user_id": tenant.user_id,
                "project_id": tenant.project_id,
                "external_id": f"note-{i}",
                "raw_data": {"content": f"note {i}: " + "the import ran out of disk " * 30},
            }
            f.write(json.dumps(record) + "\n")


def test_an_import_into_a_full_disk_is_refused_whole_then_lands_once(freed, tmp_path):
    home = freed.home
    tenant = _tenant("import")
    source = tmp_path / "notes.jsonl"  # outside the full file system
    _import_file(source, tenant, 2000)
    assert freed.home_disk.fill() > 0 and freed.home_disk.full

    refused = home.cli("import", str(source))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    message = _error_line(refused.stderr)
    assert message.startswith("memory-pipeline import: ") and "No space left on device" in message

    freed.home_disk.free()
    wait_for(lambda: _database_answers(home), CASE_TIMEOUT_SECONDS, "Postgres answering again")
    assert _ids_of(home, tenant) == []  # nothing half-written

    landed = home.cli("import", str(source), "--json")
    assert landed.returncode == 0, landed.stderr
    assert json.loads(landed.stdout)["inserted"] == 2000
    again = home.cli("import", str(source), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["inserted"] == 0
    ids = _ids_of(home, tenant)
    assert len(ids) == 2000
    _all_embedded_once(home, [tenant], ids)


def test_a_run_that_fills_the_disk_rolls_back_and_resumes_once_space_is_freed(freed):
    home = freed.home
    tenants = [_tenant("run-a"), _tenant("run-b")]
    ids = [i for n, t in enumerate(tenants) for i in insert_rows(home, t, 150, seed=n)]
    _mid_batch(home)  # a run has claimed rows and is embedding them
    freed.home_disk.fill()
    # the run's write of its vectors cannot land: its rows stay claimable, none embedded
    wait_for(
        lambda: any("No space left on device" in line for line in freed.up.output),
        CASE_TIMEOUT_SECONDS,
        "the run failing on the full disk",
    )
    freed.home_disk.free()
    _all_embedded_once(home, tenants, ids)


def _dagster_log_says(home: Home, text: str) -> bool:
    log = home.path / "dagster-dev.log"
    return log.exists() and text in log.read_text(errors="replace")


def test_a_full_chroma_fails_runs_clearly_then_they_resume_once_space_is_freed(freed):
    home = freed.home
    known, new = _tenant("chroma-known"), _tenant("chroma-new")
    first = insert_rows(home, known, 20, seed=3)
    wait_until_terminal(home, first, CASE_TIMEOUT_SECONDS)  # its collection exists
    assert freed.chroma_disk.fill() > 0 and freed.chroma_disk.full

    ids = first + insert_rows(home, known, 100, seed=4) + insert_rows(home, new, 100, seed=5)
    # Chroma's SQLite refuses the writes; the run fails naming it, and every row stays workable
    wait_for(
        lambda: _dagster_log_says(home, "(code: 13) database or disk is full"),
        CASE_TIMEOUT_SECONDS,
        "a run failing on Chroma's full disk",
    )
    assert _dagster_log_says(home, "VectorStoreUnavailable: Chroma ")
    assert set(states(home, ids[20:]).values()) <= {"pending", "embedded"}  # none failed or dead
    freed.chroma_disk.free()
    # Chroma may stay wedged after its SQLite hit the full disk: `up` then restarts it
    _all_embedded_once(home, [known, new], ids)


def _post_batch(service: FullDiskHome, tenant: Tenant, batch: int) -> httpx.Response:
    memories = [
        {
            "user_id": tenant.user_id,
            "project_id": tenant.project_id,
            "external_id": f"batch-{batch}-{n}",
            "raw_data": {"content": f"batch {batch} memory {n}: " + "written on a full disk " * 40},
        }
        for n in range(200)
    ]
    return httpx.post(
        f"{service.service_url}/v1/memories/batch",
        headers={"Authorization": f"Bearer {service.admin_key}"},
        json={"memories": memories},
        timeout=60,
    )


def test_the_service_refuses_writes_on_a_full_disk_with_503_then_accepts_them(freed):
    home = freed.home
    tenant = _tenant("service")
    freed.home_disk.fill()
    # the database's free pages and WAL take some writes; batches go on until one is refused
    accepted: set[int] = set()
    refused = None
    for batch in range(200):
        answer = _post_batch(freed, tenant, batch)
        if answer.status_code != 200:
            refused = (batch, answer)
            break
        results = answer.json()["results"]
        assert all("id" in r for r in results), results  # a batch is stored whole or refused
        accepted |= {r["id"] for r in results}
    assert refused is not None, "the full disk never refused a batch"
    batch, answer = refused
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unavailable" and "\n" not in error["message"], error
    freed.home_disk.free()
    wait_for(lambda: _database_answers(home), CASE_TIMEOUT_SECONDS, "Postgres answering again")
    assert set(_ids_of(home, tenant)) == accepted  # the refused batch left nothing behind

    def stored_again() -> httpx.Response | None:  # the service may still be reconnecting
        again = _post_batch(freed, tenant, batch)
        return again if again.status_code == 200 else None

    again = wait_for(stored_again, CASE_TIMEOUT_SECONDS, "the service accepting writes again", 2)
    assert all(r.get("created") is True for r in again.json()["results"]), again.text
    ids = _ids_of(home, tenant)
    assert len(ids) == len(accepted) + 200
    _all_embedded_once(home, [tenant], ids)

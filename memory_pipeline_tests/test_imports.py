"""Bulk import (DESIGN §5 ``import``) against the real Postgres: files → staging (COPY) → memory_log."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from memory_pipeline.imports import import_candidates, import_files, import_paths
from memory_pipeline.settings import Settings
from memory_pipeline.tenancy import Tenant

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI = REPO_ROOT / ".venv" / "bin" / "memory-pipeline"
CONTRACT_KEYS = {"inserted", "duplicates", "rejected", "reject_file"}


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture
def tenant(new_tenant: Callable[..., Tenant], database_url: str) -> Iterator[Tenant]:
    """A fresh tenant whose imported rows are removed afterwards.

    Imported rows are pending: left behind, they would be work for any later test that
    processes every tenant.
    """
    made = new_tenant("import")
    yield made
    _forget_tenant(database_url, made)


def _forget_tenant(database_url: str, tenant: Tenant) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM memory_log WHERE tenant_key = %s", (tenant.key,))
        conn.execute("DELETE FROM memory_tombstone WHERE tenant_key = %s", (tenant.key,))
        conn.execute("DELETE FROM memory_tenant WHERE tenant_key = %s", (tenant.key,))


def _record(tenant: Tenant, raw_data: Any, **fields: Any) -> dict[str, Any]:
    return {
        "user_id": tenant.user_id,
        "project_id": tenant.project_id,
        "raw_data": raw_data,
        **fields,
    }


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _rows(store, tenant: Tenant) -> list[dict[str, Any]]:
    with store.db.connection() as conn:
        return conn.execute(
            """SELECT id, external_id, raw_data, status, created_at, occurred_at,
                      occurred_at_explicit, tenant_key
               FROM memory_log WHERE tenant_key = %s ORDER BY id""",
            (tenant.key,),
        ).fetchall()


def _rejects(result: dict[str, Any]) -> list[dict[str, Any]]:
    assert result["reject_file"] is not None
    return [json.loads(line) for line in Path(result["reject_file"]).read_text().splitlines()]


# --------------------------------------------------------------------------------- behaviours
def test_an_import_inserts_pending_rows_and_reports_the_four_counts(store, tenant, tmp_path):
    when = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    path = _write_jsonl(
        tmp_path / "memories.jsonl",
        [
            _record(tenant, {"content": "first note"}, external_id="n-1"),
            _record(tenant, {"content": "second note"}, occurred_at=when.isoformat()),
            _record(tenant, {"content": "third note"}, created_at="2023-01-02T03:04:05Z"),
        ],
    )

    result = import_files(store, [path])

    assert set(result) >= CONTRACT_KEYS
    assert result | {"reject_file": None} == {
        "inserted": 3,
        "duplicates": 0,
        "rejected": 0,
        "reject_file": None,
        "files_imported": 1,
        "files_skipped": 0,
    }
    rows = _rows(store, tenant)
    assert [r["raw_data"]["content"] for r in rows] == ["first note", "second note", "third note"]
    assert {r["status"] for r in rows} == {"pending"}
    assert rows[0]["external_id"] == "n-1"
    assert rows[1]["occurred_at"] == when and rows[1]["occurred_at_explicit"]
    created = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert rows[2]["created_at"] == created == rows[2]["occurred_at"]
    assert not rows[2]["occurred_at_explicit"]
    assert {r["tenant_key"] for r in rows} == {tenant.key}


def test_importing_the_same_file_twice_inserts_nothing_the_second_time(store, tenant, tmp_path):
    # no external ids: only the ledger of file contents can keep the second import out
    path = _write_jsonl(
        tmp_path / "notes.jsonl", [_record(tenant, {"content": f"note {i}"}) for i in range(5)]
    )

    first = import_files(store, [path])
    second = import_files(store, [path])

    assert (first["inserted"], first["files_imported"]) == (5, 1)
    assert (second["inserted"], second["duplicates"], second["rejected"]) == (0, 0, 0)
    assert (second["files_imported"], second["files_skipped"]) == (0, 1)
    assert len(_rows(store, tenant)) == 5


def test_the_same_content_under_another_name_is_skipped(store, tenant, tmp_path):
    original = _write_jsonl(tmp_path / "a.jsonl", [_record(tenant, {"content": "copied"})])
    copy = tmp_path / "copy-of-a.ndjson"
    copy.write_bytes(original.read_bytes())

    result = import_files(store, [original, copy])

    assert (result["inserted"], result["files_imported"], result["files_skipped"]) == (1, 1, 1)
    assert len(_rows(store, tenant)) == 1


def test_overlapping_files_insert_each_memory_once_and_count_duplicates(store, tenant, tmp_path):
    first = _write_jsonl(
        tmp_path / "first.jsonl",
        [
            _record(tenant, {"content": f"memory {i}", "from": "first"}, external_id=f"m-{i}")
            for i in range(1, 4)
        ],
    )
    second = _write_jsonl(
        tmp_path / "second.jsonl",
        [
            _record(tenant, {"content": f"memory {i}", "from": "second"}, external_id=f"m-{i}")
            for i in range(2, 6)
        ],
    )

    together = import_files(store, [first, second])

    assert (together["inserted"], together["duplicates"]) == (5, 2)
    rows = _rows(store, tenant)
    assert sorted(r["external_id"] for r in rows) == [f"m-{i}" for i in range(1, 6)]
    by_id = {r["external_id"]: r["raw_data"]["from"] for r in rows}
    assert by_id["m-2"] == by_id["m-3"] == "first"  # the earlier record wins


def test_a_repeated_external_id_within_one_file_keeps_the_first_record(store, tenant, tmp_path):
    path = _write_jsonl(
        tmp_path / "repeats.jsonl",
        [
            _record(tenant, {"content": "the original"}, external_id="same"),
            _record(tenant, {"content": "no id, kept"}),
            _record(tenant, {"content": "the repeat"}, external_id="same"),
            _record(tenant, {"content": "no id, also kept"}),
        ],
    )

    result = import_files(store, [path])

    assert (result["inserted"], result["duplicates"]) == (3, 1)
    contents = [r["raw_data"]["content"] for r in _rows(store, tenant)]
    assert contents == ["the original", "no id, kept", "no id, also kept"]


def test_an_external_id_already_in_the_database_counts_as_a_duplicate(store, tenant, tmp_path):
    existing = store.create_memory_log(
        tenant.user_id, tenant.project_id, {"content": "written by the app"}, external_id="x-1"
    )
    path = _write_jsonl(
        tmp_path / "late.jsonl",
        [
            _record(tenant, {"content": "imported later"}, external_id="x-1"),
            _record(tenant, {"content": "new"}, external_id="x-2"),
        ],
    )

    result = import_files(store, [path])

    assert (result["inserted"], result["duplicates"], result["rejected"]) == (1, 1, 0)
    assert store.get_memory_log(existing)["raw_data"] == {"content": "written by the app"}


def test_the_reject_file_names_line_and_reason_while_good_records_land(store, tenant, tmp_path):
    too_big = {"content": "x" * (store.settings.max_document_bytes + 10)}
    lines = [
        _record(tenant, {"content": "good one"}, external_id="g-1"),  # 1
        '{"user_id": "u", "project_id": ',  # 2
        _record(tenant, {"content": "no user"}) | {"user_id": None},  # 3
        _record(tenant, {"content": "bell"}) | {"project_id": "p\x07"},  # 4
        _record(tenant, ["not", "an", "object"]),  # 5
        "",  # 6 (blank: ignored)
        _record(tenant, {"content": "nul \u0000 inside"}),  # 7
        _record(tenant, too_big),  # 8
        _record(tenant, {"content": "when?"}, occurred_at="last tuesday"),  # 9
        _record(tenant, {"content": "odd id"}, external_id=["a", "list"]),  # 10
        "[1, 2, 3]",  # 11
        _record(tenant, {"content": "good two"}, created_at="2024-02-29"),  # 12
    ]
    path = _write_jsonl(tmp_path / "mixed.jsonl", lines)

    result = import_files(store, [path])

    assert (result["inserted"], result["duplicates"], result["rejected"]) == (2, 0, 9)
    assert Path(result["reject_file"]).parent == store.settings.rejects_dir
    rejects = _rejects(result)
    assert all(r["file"] == str(path) for r in rejects)
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert sorted(reasons) == [2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert reasons[2].startswith("invalid JSON")
    assert "user_id is missing" in reasons[3]
    assert "project_id contains a control character" in reasons[4]
    assert "raw_data must be a JSON object" in reasons[5]
    assert "\\u0000" in reasons[7]
    assert "the limit is" in reasons[8]
    assert "occurred_at is not an ISO 8601 timestamp" in reasons[9]
    assert "external_id" in reasons[10]
    assert "record must be a JSON object" in reasons[11]
    by_line = {r["line"]: r["record"] for r in rejects}
    assert by_line[2] == '{"user_id": "u", "project_id": '
    assert by_line[9]["occurred_at"] == "last tuesday"
    assert [r["raw_data"]["content"] for r in _rows(store, tenant)] == ["good one", "good two"]


def test_a_file_of_only_bad_records_is_read_and_remembered(store, tenant, tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", ["not json", _record(tenant, "a string")])

    first = import_files(store, [path])
    second = import_files(store, [path])

    assert (first["inserted"], first["rejected"], first["files_imported"]) == (0, 2, 1)
    assert [r["line"] for r in _rejects(first)] == [1, 2]
    assert (second["rejected"], second["files_skipped"], second["reject_file"]) == (0, 1, None)


def test_csv_round_trip(store, tenant, tmp_path):
    raw = [
        {"content": "plain"},
        {"summary": 'commas, "quotes" and\na newline', "tags": ["csv", "ünïcode"]},
        {"speaker": "Ana", "text": "hi", "nested": {"deep": [1, 2.5, None, True]}},
    ]
    occurred = ["2024-03-01T10:00:00+02:00", "", "2024-03-03T00:00:00Z"]
    frame = pd.DataFrame(
        {
            "user_id": tenant.user_id,
            "project_id": tenant.project_id,
            "raw_data": [json.dumps(r, ensure_ascii=False) for r in raw],
            "external_id": ["c-1", "c-2", ""],
            "occurred_at": occurred,
        }
    )
    path = tmp_path / "memories.csv"
    frame.to_csv(path, index=False)

    result = import_files(store, [path])

    assert (result["inserted"], result["rejected"]) == (3, 0)
    rows = _rows(store, tenant)
    assert [r["raw_data"] for r in rows] == raw
    assert [r["external_id"] for r in rows] == ["c-1", "c-2", None]
    assert rows[0]["occurred_at"] == datetime.fromisoformat(occurred[0])
    assert rows[1]["occurred_at"] == rows[1]["created_at"]
    assert rows[2]["occurred_at"] == datetime(2024, 3, 3, tzinfo=UTC)


def test_csv_rejects_name_the_line_where_the_record_starts(store, tenant, tmp_path):
    good = '{"text":\n"spans two lines"}'  # JSON may have a newline between tokens
    path = tmp_path / "lines.csv"
    pd.DataFrame(
        {
            "user_id": [tenant.user_id, tenant.user_id, ""],
            "project_id": tenant.project_id,
            "raw_data": [good, "{not json", '{"ok": true}'],
        }
    ).to_csv(path, index=False)
    with path.open("a", encoding="utf-8") as file:
        file.write(f'{tenant.user_id},{tenant.project_id},"{{}}",extra\n')

    result = import_files(store, [path])

    # line 1 header; 2-3 the two-line record; 4 bad JSON; 5 no user; 6 an extra field
    assert (result["inserted"], result["rejected"]) == (1, 3)
    reasons = {r["line"]: r["reason"] for r in _rejects(result)}
    assert sorted(reasons) == [4, 5, 6]
    assert "raw_data is not valid JSON" in reasons[4]
    assert "user_id is missing" in reasons[5]
    assert "4 fields" in reasons[6]


def test_parquet_round_trip_with_json_text_raw_data(store, tenant, tmp_path):
    raw = [{"content": f"parquet note {i}", "n": i} for i in range(25)]
    base = datetime(2024, 1, 1, tzinfo=UTC)
    table = pa.table(
        {
            "user_id": [tenant.user_id] * 25,
            "project_id": [tenant.project_id] * 25,
            "raw_data": [json.dumps(r) for r in raw],
            "external_id": [f"p-{i}" for i in range(25)],
            "occurred_at": [(base + timedelta(hours=i)).isoformat() for i in range(25)],
        }
    )
    path = tmp_path / "memories.parquet"
    pq.write_table(table, path, row_group_size=10)

    result = import_files(store, [path])

    assert (result["inserted"], result["rejected"]) == (25, 0)
    rows = _rows(store, tenant)
    assert [r["raw_data"] for r in rows] == raw
    assert [r["external_id"] for r in rows] == [f"p-{i}" for i in range(25)]
    assert [r["occurred_at"] for r in rows] == [base + timedelta(hours=i) for i in range(25)]


def test_parquet_round_trip_with_struct_raw_data_and_native_timestamps(store, tenant, tmp_path):
    raw = [
        {"task": "t1", "summary": "struct row", "tags": ["a", "b"]},
        {"task": "t2", "summary": "another", "tags": []},
    ]
    occurred = [datetime(2024, 6, 1, 8, 0, tzinfo=UTC), None]
    table = pa.table(
        {
            "user_id": [tenant.user_id] * 2,
            "project_id": [tenant.project_id] * 2,
            "raw_data": raw,
            "external_id": ["s-1", None],
            "occurred_at": pa.array(occurred, type=pa.timestamp("us", tz="UTC")),
            "created_at": pa.array([None, datetime(2022, 2, 2, 2, 2)], type=pa.timestamp("us")),
        }
    )
    path = tmp_path / "structs.parquet"
    pq.write_table(table, path)

    result = import_files(store, [path])

    assert (result["inserted"], result["rejected"]) == (2, 0)
    rows = _rows(store, tenant)
    assert [r["raw_data"] for r in rows] == raw
    assert [r["external_id"] for r in rows] == ["s-1", None]
    assert rows[0]["occurred_at"] == occurred[0]
    # a timestamp without a time zone is UTC; with no occurred_at, the row's time is created_at
    assert rows[1]["created_at"] == rows[1]["occurred_at"] == datetime(2022, 2, 2, 2, 2, tzinfo=UTC)


def test_a_parquet_row_number_is_its_reject_line(store, tenant, tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": [tenant.user_id, tenant.user_id, tenant.user_id],
                "project_id": [tenant.project_id, None, tenant.project_id],
                "raw_data": ['{"a": 1}', '{"a": 2}', "[]"],
            }
        ),
        path,
    )

    result = import_files(store, [path])

    assert {r["line"]: r["reason"] for r in _rejects(result)} == {
        2: "project_id is missing",
        3: "raw_data must be a JSON object, got list",
    }


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "no such file"),
        ("corrupt.parquet", b"PAR1 this is not parquet at all", "Parquet"),
        ("notes.txt", b"{}", "cannot import files of type"),
    ],
)
def test_a_file_that_cannot_be_read_raises_naming_it(store, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)

    with pytest.raises((OSError, ValueError), match=message) as raised:
        import_files(store, [path])

    assert name in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_failing_file_leaves_nothing_half_imported(store, tenant, tmp_path):
    readable = _write_jsonl(tmp_path / "a.jsonl", [_record(tenant, {"content": "lands"})])
    corrupt = tmp_path / "b.parquet"
    corrupt.write_bytes(b"not parquet")

    with pytest.raises(ValueError, match="b.parquet"):
        import_files(store, [readable, corrupt])

    # the readable file before it was imported (and is remembered); nothing of the corrupt one
    assert [r["raw_data"]["content"] for r in _rows(store, tenant)] == ["lands"]
    assert import_files(store, [readable])["files_skipped"] == 1


def test_progress_goes_to_stderr_as_a_bar(store, tenant, tmp_path, capsys):
    path = _write_jsonl(tmp_path / "bar.jsonl", [_record(tenant, {"content": "with a bar"})])

    import_files(store, [path], progress=True)

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "import" in captured.err and "100%" in captured.err


def test_import_candidates_are_visible_files_of_known_types_outside_the_homes_own_folders(
    tmp_path,
):
    home = tmp_path / "home"
    for name in (
        "a.jsonl",
        "sub/c.CSV",
        "sub/d.parquet",
        "b.txt",
        ".hidden/e.jsonl",
        ".f.jsonl",
        "rejects/import-1.jsonl",
        "dagster/x.jsonl",
    ):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("{}\n")
    # the import folder may even be the home itself
    settings = Settings(home=home, import_dir=home)

    found = import_candidates(settings)

    assert [p.relative_to(home).as_posix() for p in found] == [
        "a.jsonl",
        "sub/c.CSV",
        "sub/d.parquet",
    ]


def _staging_counts(database_url: str) -> tuple[int, int]:
    """(rows ever inserted into the staging table, staging batches started)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        inserted = conn.execute(
            "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'memory_log_import_staging'"
        ).fetchone()[0]
        last, called = conn.execute(
            "SELECT last_value, is_called FROM memory_log_import_batch_seq"
        ).fetchone()
    return int(inserted), int(last) if called else 0


def _staged_rows_reach(database_url: str, target: int) -> int:
    """Rows ever inserted into staging, waiting (up to 20 s) for them to reach ``target``.

    A backend flushes its table statistics a little after its transaction ends, so the count
    lags; rows of earlier imports may also arrive late, so it can only be checked from below.
    """
    deadline = time.monotonic() + 20
    with psycopg.connect(database_url, autocommit=True) as conn:
        while (
            current := _staging_counts(database_url)[0]
        ) < target and time.monotonic() < deadline:
            # pg_sleep waits inside the server whose statistics we are waiting for
            conn.execute("SELECT pg_sleep(0.25)")
    return current


def test_a_100k_row_import_goes_through_copy_in_a_few_batches(
    store, tenant, tmp_path, database_url
):
    n = 100_000
    head = f'{{"user_id":"{tenant.user_id}","project_id":"{tenant.project_id}","raw_data":{{"n":'
    path = tmp_path / "big.jsonl"
    path.write_text("".join(f'{head}{i}}},"external_id":"e{i}"}}\n' for i in range(n)))
    staged_before, batches_before = _staging_counts(database_url)

    started = time.monotonic()
    result = import_files(store, [path])
    elapsed = time.monotonic() - started

    assert (result["inserted"], result["duplicates"], result["rejected"]) == (n, 0, 0)
    with store.db.connection() as conn:
        count = conn.execute(
            "SELECT count(*) AS n FROM memory_log WHERE tenant_key = %s", (tenant.key,)
        ).fetchone()["n"]
    assert count == n
    # Every row entered the staging table (only COPY writes it) in 10 batches of 10k, each batch
    # moved on by one INSERT ... SELECT: not one statement per row.
    _, batches_after = _staging_counts(database_url)
    assert batches_after - batches_before == 10
    assert _staged_rows_reach(database_url, staged_before + n) >= staged_before + n
    assert elapsed < 120, f"100k rows took {elapsed:.0f} s"


# ----------------------------------------------------------------------------------- property
_text = st.text(max_size=12)
_value = st.none() | st.booleans() | st.integers() | st.floats() | _text
_field = _value | st.dictionaries(_text, _value, max_size=3) | st.lists(_value, max_size=3)


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {"raw_data": _field},
            optional={
                "user_id": _field,
                "project_id": _field,
                "external_id": _field,
                "occurred_at": _field,
                "created_at": _field,
            },
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_record_is_inserted_a_duplicate_or_rejected(store, settings, tmp_path_factory, records):
    tenant = Tenant("prop-user", "prop-project")
    for record in records:  # a valid tenant most of the time, anything at times
        record.setdefault("user_id", tenant.user_id)
        record.setdefault("project_id", tenant.project_id)
    path = _write_jsonl(
        tmp_path_factory.mktemp("prop") / "any.jsonl",
        [
            json.dumps(r, default=str)
            for r in records  # escapes lone surrogates, keeps NaN
        ],
    )
    with store.db.connection() as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) AS id FROM memory_log").fetchone()["id"]
    try:
        summary = import_paths(store.db, settings, [path])
        assert summary.inserted + summary.duplicates + summary.rejected == len(records)
    finally:
        with store.db.connection() as conn:
            conn.execute("DELETE FROM memory_log WHERE id > %s", (before,))
            conn.execute("DELETE FROM memory_tombstone WHERE log_id > %s", (before,))


# ---------------------------------------------------------------------------------------- CLI
def test_the_cli_prints_one_json_document_with_the_four_counts(tenant, tmp_path, home_env):
    path = _write_jsonl(
        tmp_path / "cli.jsonl",
        [
            _record(tenant, {"content": "from the cli"}, external_id="cli-1"),
            "broken",
        ],
    )

    done = subprocess.run(
        [str(CLI), "import", str(path), "--json"],
        env=home_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= CONTRACT_KEYS
    assert (result["inserted"], result["duplicates"], result["rejected"]) == (1, 0, 1)
    assert Path(result["reject_file"]).is_file()
    assert done.stdout.count("\n") == 1


def test_the_cli_exits_non_zero_with_one_line_for_a_missing_file(tmp_path, home_env):
    missing = tmp_path / "nowhere.jsonl"

    done = subprocess.run(
        [str(CLI), "import", str(missing), "--json"],
        env=home_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0
    assert "nowhere.jsonl" in done.stderr and "no such file" in done.stderr

"""The ``memory-pipeline`` CLI as a user runs it: subprocesses on the test home."""

import json
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "memory_pipeline.cli"]


def run_cli(env, *args, check=True):
    proc = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def test_every_verb_has_help(home_env):
    for verb in [
        "up",
        "db",
        "migrate",
        "add",
        "get",
        "delete",
        "import",
        "process",
        "search",
        "status",
        "tenants",
        "retry",
    ]:
        proc = run_cli(home_env, verb, "--help")
        assert verb in proc.stdout


def test_add_process_get_search_status_with_json_output(home_env, new_tenant):
    tenant = new_tenant("cli")
    added = json.loads(
        run_cli(
            home_env,
            "add",
            "--user",
            tenant.user_id,
            "--project",
            tenant.project_id,
            "--data",
            json.dumps({"content": "the staging server runs on port 8443"}),
            "--external-id",
            "cli-1",
            "--json",
        ).stdout
    )
    log_id = added["id"]
    processed = json.loads(
        run_cli(
            home_env, "process", "--user", tenant.user_id, "--project", tenant.project_id, "--json"
        ).stdout
    )
    assert processed["embedded"] == 1
    row = json.loads(run_cli(home_env, "get", str(log_id), "--json").stdout)
    for field in [
        "id",
        "user_id",
        "project_id",
        "external_id",
        "status",
        "attempts",
        "last_error",
        "memory_type",
        "occurred_at",
        "search_text",
        "raw_data",
    ]:
        assert field in row
    assert row["status"] == "embedded" and row["external_id"] == "cli-1"
    results = json.loads(
        run_cli(
            home_env,
            "search",
            "--user",
            tenant.user_id,
            "--project",
            tenant.project_id,
            "--limit",
            "3",
            "which port does staging use",
            "--json",
        ).stdout
    )
    assert results[0]["log_id"] == log_id
    assert set(results[0]) >= {
        "log_id",
        "external_id",
        "score",
        "similarity",
        "text",
        "memory_type",
        "occurred_at",
        "created_at",
        "raw_data",
    }
    status = json.loads(run_cli(home_env, "status", "--json").stdout)
    mine = [t for t in status["tenants"] if t["tenant_key"] == tenant.key]
    assert mine and mine[0]["embedded"] == 1
    assert set(status["totals"]) == {"pending", "embedded", "skipped", "failed", "dead"}


def test_repeated_external_id_returns_the_same_id(home_env, new_tenant):
    tenant = new_tenant("cli")
    args = [
        "add",
        "--user",
        tenant.user_id,
        "--project",
        tenant.project_id,
        "--data",
        '{"content": "x"}',
        "--external-id",
        "same",
        "--json",
    ]
    assert json.loads(run_cli(home_env, *args).stdout) == json.loads(
        run_cli(home_env, *args).stdout
    )


def test_add_wait_returns_once_another_process_has_embedded_the_memory(home_env, new_tenant):
    tenant = new_tenant("cli")
    who = ["--user", tenant.user_id, "--project", tenant.project_id]
    data = json.dumps({"content": "the backup job runs at 02:00 UTC"})
    waiting = subprocess.Popen(
        [*CLI, "add", *who, "--data", data, "--wait", "--timeout", "240", "--json"],
        env=home_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        processed = {"embedded": 0}
        deadline = time.monotonic() + 120
        while processed["embedded"] == 0 and time.monotonic() < deadline:
            processed = json.loads(run_cli(home_env, "process", *who, "--json").stdout)
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert processed["embedded"] == 1
    assert waiting.returncode == 0, err
    assert json.loads(out)["status"] == "embedded"


def test_add_wait_that_times_out_still_reports_the_stored_id_and_who_embeds_it(
    home_env, new_tenant
):
    tenant = new_tenant("cli")
    who = ["--user", tenant.user_id, "--project", tenant.project_id]
    proc = run_cli(
        home_env,
        "add",
        *who,
        "--data",
        '{"content": "nobody processes this yet"}',
        "--wait",
        "--timeout",
        "0.5",
        "--json",
        check=False,
    )
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["status"] == "pending"
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"memory {out['id']} was added" in proc.stderr
    assert "memory-pipeline process" in proc.stderr
    got = json.loads(run_cli(home_env, "get", str(out["id"]), "--json").stdout)
    assert got["status"] == "pending"


@pytest.mark.parametrize(
    "args",
    [
        ["add", "--user", "", "--project", "p", "--data", "{}"],
        ["add", "--user", "u", "--project", "p", "--data", "[1, 2]"],
        ["add", "--user", "u", "--project", "p", "--data", "{not json"],
        ["add", "--user", "u" * 300, "--project", "p", "--data", "{}"],
        ["get", "999999999"],
        ["search", "--user", "u", "--project", "p", "--mode", "telepathy", "q"],
        ["process", "--user", "only-user"],
        ["tenants"],
        ["tenants", "--user", "u", "--limit", "0"],
        ["tenants", "--project", "p" * 300],
    ],
)
def test_bad_input_exits_non_zero_with_one_line_on_stderr(home_env, args):
    proc = run_cli(home_env, *args, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "an error message is expected on stderr"
    assert "Traceback" not in proc.stderr
    if args[0] != "search":  # argparse prints usage + error for unknown choices
        assert len(lines) == 1


def test_tenants_finds_a_tenant_by_user_or_project_with_its_partition(home_env, new_tenant):
    tenant = new_tenant("lookup")
    run_cli(
        home_env,
        "add",
        "--user",
        tenant.user_id,
        "--project",
        tenant.project_id,
        "--data",
        '{"content": "find me"}',
        "--json",
    )
    (by_user,) = json.loads(run_cli(home_env, "tenants", "--user", tenant.user_id, "--json").stdout)
    by_project = json.loads(
        run_cli(home_env, "tenants", "--project", tenant.project_id, "--json").stdout
    )
    assert by_project == [by_user]
    assert by_user["tenant_key"] == tenant.key
    assert by_user["partition"] == tenant.partition_key  # a small home: its own partition
    assert by_user["collection"] == tenant.collection_name and by_user["shard"] is None
    assert by_user["pending"] + by_user["embedded"] == 1
    nobody = run_cli(home_env, "tenants", "--user", f"{tenant.user_id}-nobody", "--json")
    assert json.loads(nobody.stdout) == []


def test_db_url_is_a_libpq_uri_psycopg_accepts(home_env):
    import psycopg

    url = run_cli(home_env, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()


def test_db_status_and_migrate_report_json(home_env):
    status = json.loads(run_cli(home_env, "db", "status", "--json").stdout)
    assert status["postgres"]["running"] is True and status["chroma"]["running"] is True
    assert json.loads(run_cli(home_env, "migrate", "--json").stdout) == {"applied": []}

"""The scale-out path: an external Chroma server with token auth, reached through the environment.

`chroma run` (the Rust server in chromadb 1.5.9) accepts but does not enforce token auth, so the
test starts Chroma's Python server from the same chromadb wheel (uvicorn chromadb.app:app) with
its token authentication provider, on 127.0.0.1.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memory_pipeline.local_services.local_chroma import _free_port, heartbeat_ok
from memory_pipeline.vector_store import VectorStoreUnavailable, connect_chroma

TOKEN = "test-token-5f1c"


@pytest.fixture(scope="module")
def token_chroma(tmp_path_factory):
    data = tmp_path_factory.mktemp("chroma-token")
    port = _free_port("127.0.0.1")
    env = {
        **os.environ,
        "CHROMA_SERVER_AUTHN_PROVIDER": "chromadb.auth.token_authn.TokenAuthenticationServerProvider",
        "CHROMA_SERVER_AUTHN_CREDENTIALS": TOKEN,
        "IS_PERSISTENT": "1",
        "PERSIST_DIRECTORY": str(data),
        "ANONYMIZED_TELEMETRY": "False",
    }
    log = open(data / "server.log", "wb")  # noqa: SIM115 - the server writes to it until teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "chromadb.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while not heartbeat_ok("127.0.0.1", port):
        log_tail = Path(data / "server.log").read_text()[-2000:]
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Chroma server did not start: {log_tail}")
        try:  # wait on the process itself: an early exit ends the wait at once
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"Chroma server exited: {log_tail}")
    yield port
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _env(home_env, database_url, port, token, tmp_path):
    env = {
        **home_env,
        "MEMORY_PIPELINE_HOME": str(tmp_path / "home"),
        "MEMORY_PIPELINE_DATABASE_URL": database_url,
        "MEMORY_PIPELINE_CHROMA_HOST": "127.0.0.1",
        "MEMORY_PIPELINE_CHROMA_PORT": str(port),
    }
    if token is not None:
        env["MEMORY_PIPELINE_CHROMA_TOKEN"] = token
    return env


def _cli(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "memory_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_pipeline_runs_end_to_end_on_an_external_chroma_server_with_a_token(
    token_chroma, home_env, database_url, new_tenant, tmp_path
):
    env = _env(home_env, database_url, token_chroma, TOKEN, tmp_path)
    tenant = new_tenant("ext")
    add = _cli(
        env,
        "add",
        "--user",
        tenant.user_id,
        "--project",
        tenant.project_id,
        "--data",
        json.dumps({"content": "the on-call rotation changes every Monday"}),
        "--json",
    )
    assert add.returncode == 0, add.stderr
    log_id = json.loads(add.stdout)["id"]
    processed = _cli(
        env, "process", "--user", tenant.user_id, "--project", tenant.project_id, "--json"
    )
    assert processed.returncode == 0, processed.stderr
    assert json.loads(processed.stdout)["embedded"] == 1
    found = _cli(
        env,
        "search",
        "--user",
        tenant.user_id,
        "--project",
        tenant.project_id,
        "--mode",
        "vector",
        "when does on-call rotate?",
        "--json",
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["log_id"] == log_id

    client = connect_chroma("127.0.0.1", token_chroma, TOKEN)
    collection = client.get_collection(tenant.collection_name)
    assert collection.get(ids=[str(log_id)])["ids"] == [str(log_id)]
    assert not (tmp_path / "home" / "chroma").exists()  # no local Chroma was started


@pytest.mark.parametrize("token", ["wrong-token", None])
def test_a_missing_or_wrong_token_is_a_clear_error(token_chroma, token):
    with pytest.raises(VectorStoreUnavailable, match=f"127.0.0.1:{token_chroma}"):
        connect_chroma("127.0.0.1", token_chroma, token).list_collections()


def test_the_cli_reports_a_rejected_token_in_one_line(
    token_chroma, home_env, database_url, new_tenant, tmp_path
):
    env = _env(home_env, database_url, token_chroma, "wrong-token", tmp_path)
    tenant = new_tenant("ext")
    _cli(
        env,
        "add",
        "--user",
        tenant.user_id,
        "--project",
        tenant.project_id,
        "--data",
        '{"content": "x"}',
    )
    proc = _cli(env, "process", "--user", tenant.user_id, "--project", tenant.project_id)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "wrong-token" not in proc.stderr  # tokens never appear in output

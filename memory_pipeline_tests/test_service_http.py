"""The memory service's HTTP API against a real ``memory-pipeline serve`` process (issue 16)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import httpx
import psycopg
import pytest

from memory_pipeline.service import keys
from memory_pipeline.service.errors import service_error_of
from memory_pipeline.tenancy import Tenant

WAIT = 120  # seconds a write may wait for the embedding worker

SEARCH_RESULT_FIELDS = {
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
GET_FIELDS = {
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
}


@pytest.fixture
def tenant_key(store, new_tenant):
    """A fresh tenant and a key for it: (tenant, key)."""
    tenant = new_tenant("svc")
    return tenant, keys.create_key(store.db, tenant, "test").key


def client(service, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=service.base_url, headers=headers, timeout=WAIT + 30)


def assert_error(response: httpx.Response, status: int, code: str, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert "\n" not in error["message"] and error["message"]
    assert fragment in error["message"], error["message"]


def tenant_rows(store, tenant: Tenant) -> int:
    """How many memories the tenant has, whatever their state."""
    states = ("pending", "embedded", "skipped", "failed", "dead")
    rows = [t for t in store.status()["tenants"] if t["tenant_key"] == tenant.key]
    return sum(int(t[s]) for t in rows for s in states)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_add_search_update_search_delete(service, embedding_worker, tenant_key):
    tenant, key = tenant_key
    embedding_worker.watch(tenant)
    with client(service, key) as api:
        added = api.post(
            "/v1/memories",
            json={
                "raw_data": {"content": "The deploy broke because the Redis TLS cert expired"},
                "wait": WAIT,
            },
        )
        assert added.status_code == 201, added.text
        memory_id = added.json()["id"]
        assert added.json()["status"] == "embedded"

        found = api.post("/v1/search", json={"query": "why did the deploy break?"})
        assert found.status_code == 200, found.text
        results = found.json()["results"]
        assert results[0]["log_id"] == memory_id
        assert set(results[0]) >= SEARCH_RESULT_FIELDS
        assert "Redis TLS cert" in results[0]["text"]
        assert "explanation" not in results[0]
        explained = api.post(
            "/v1/search", json={"query": "why did the deploy break?", "explain": True}
        )
        assert explained.json()["results"][0]["log_id"] == memory_id
        assert isinstance(explained.json()["results"][0]["explanation"], dict)

        updated = api.patch(
            f"/v1/memories/{memory_id}",
            json={"raw_data": {"content": "Our cat Pixel only eats tuna"}, "wait": WAIT},
        )
        assert updated.status_code == 200, updated.text
        assert updated.json() == {"id": memory_id, "status": "embedded"}
        found = api.post("/v1/search", json={"query": "what does the cat eat?"}).json()
        assert found["results"][0]["log_id"] == memory_id
        assert "tuna" in found["results"][0]["text"]
        old_words = api.post("/v1/search", json={"query": "Redis", "mode": "keyword"}).json()
        assert old_words["results"] == []

        deleted = api.delete(f"/v1/memories/{memory_id}")
        assert deleted.status_code == 200 and deleted.json() == {"deleted": memory_id}
        assert_error(api.get(f"/v1/memories/{memory_id}"), 404, "not_found")
        after = api.post("/v1/search", json={"query": "what does the cat eat?"}).json()
        assert memory_id not in [r["log_id"] for r in after["results"]]


def test_get_returns_the_fields_of_the_cli_get(service, tenant_key):
    tenant, key = tenant_key
    with client(service, key) as api:
        memory_id = api.post("/v1/memories", json={"raw_data": {"content": "x"}}).json()["id"]
        row = api.get(f"/v1/memories/{memory_id}").json()
    assert set(row) >= GET_FIELDS
    assert (row["user_id"], row["project_id"]) == (tenant.user_id, tenant.project_id)
    assert row["raw_data"] == {"content": "x"} and row["status"] == "pending"
    with client(service, key) as api:
        bad = api.patch(f"/v1/memories/{memory_id}", json={"raw_data": [1]})
        assert_error(bad, 422, "invalid", "raw_data must be a JSON object")
        assert api.get(f"/v1/memories/{memory_id}").json()["raw_data"] == {"content": "x"}


def test_a_repeated_external_id_answers_200_with_the_first_id(service, tenant_key):
    _, key = tenant_key
    body = {"raw_data": {"content": "once"}, "external_id": "ext-1"}
    with client(service, key) as api:
        first = api.post("/v1/memories", json=body)
        again = api.post("/v1/memories", json={**body, "raw_data": {"content": "twice"}})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_a_tenant_key_may_name_its_own_tenant_and_an_admin_key_must_name_one(
    service, store, tenant_key
):
    tenant, key = tenant_key
    admin = keys.create_key(store.db, None, "test admin").key
    body = {"user_id": tenant.user_id, "project_id": tenant.project_id, "raw_data": {"a": 1}}
    with client(service, key) as api:
        assert api.post("/v1/memories", json=body).status_code == 201
    with client(service, admin) as api:
        assert api.post("/v1/memories", json=body).status_code == 201
        assert_error(api.post("/v1/memories", json={"raw_data": {"a": 1}}), 422, "invalid")
        assert_error(api.post("/v1/search", json={"query": "a"}), 422, "invalid", "admin key")


# ------------------------------------------------------------------------------------ batch
def test_batch_stores_the_good_records_and_reports_each_bad_one(service, store, tenant_key):
    tenant, key = tenant_key
    memories = [
        {"raw_data": {"content": "first"}, "external_id": "b-1"},
        {"raw_data": "not an object"},
        {"raw_data": {"content": "elsewhere"}, "user_id": "someone-else"},
        {"raw_data": {"content": "bad id"}, "external_id": ""},
        {"raw_data": {"content": "first again"}, "external_id": "b-1"},
        {"raw_data": {"content": "unknown field"}, "colour": "red"},
        {"raw_data": {"content": "second"}, "occurred_at": "2024-05-01T10:00:00+00:00"},
    ]
    with client(service, key) as api:
        response = api.post("/v1/memories/batch", json={"memories": memories})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(memories)
    assert results[0]["created"] is True
    assert results[1]["error"]["code"] == "invalid" and "raw_data" in results[1]["error"]["message"]
    assert results[2]["error"]["code"] == "forbidden"
    assert (
        results[3]["error"]["code"] == "invalid" and "external_id" in results[3]["error"]["message"]
    )
    assert results[4] == {"id": results[0]["id"], "created": False}
    assert results[5]["error"]["code"] == "invalid" and "colour" in results[5]["error"]["message"]
    assert results[6]["created"] is True
    assert store.get_memory_log(results[6]["id"])["occurred_at"].year == 2024
    assert tenant_rows(store, tenant) == 2


def test_a_batch_over_1000_memories_is_413_and_writes_nothing(service, store, tenant_key):
    tenant, key = tenant_key
    memories = [{"raw_data": {"n": i}} for i in range(1001)]
    with client(service, key) as api:
        assert_error(
            api.post("/v1/memories/batch", json={"memories": memories}),
            413,
            "payload_too_large",
            "1000",
        )
    assert tenant_rows(store, tenant) == 0


# ----------------------------------------------------------------------------------- errors
def test_each_error_has_its_status_code_and_one_line_message_and_writes_nothing(
    service, store, tenant_key, new_tenant
):
    tenant, key = tenant_key
    other = new_tenant("svc-other")
    other_key = keys.create_key(store.db, other).key
    revoked = keys.create_key(store.db, tenant)
    keys.revoke_key(store.db, revoked.id)
    with client(service, other_key) as api:
        others_id = api.post("/v1/memories", json={"raw_data": {"secret": "theirs"}}).json()["id"]
    good = {"raw_data": {"content": "fine"}}
    with client(service, key) as api, client(service, None) as anonymous:
        post = api.post
        cases = [
            # 400: not JSON, or no body at all
            (
                post(
                    "/v1/memories",
                    content=b"{not json",
                    headers={"content-type": "application/json"},
                ),
                400,
                "bad_request",
                "not valid JSON",
            ),
            (post("/v1/memories"), 400, "bad_request", "JSON body"),
            # 401: no key, a malformed header, a wrong key, a revoked key
            (anonymous.post("/v1/memories", json=good), 401, "unauthorized", "missing API key"),
            (
                anonymous.post(
                    "/v1/memories", json=good, headers={"Authorization": f"Basic {key}"}
                ),
                401,
                "unauthorized",
                "Bearer",
            ),
            (
                anonymous.post(
                    "/v1/memories",
                    json=good,
                    headers={"Authorization": "Bearer mpk_000000000000_" + "x" * 43},
                ),
                401,
                "unauthorized",
                "invalid or revoked",
            ),
            (
                anonymous.post(
                    "/v1/memories", json=good, headers={"Authorization": f"Bearer {revoked.key}"}
                ),
                401,
                "unauthorized",
                "invalid or revoked",
            ),
            (
                anonymous.get("/v1/status", headers={"Authorization": f"Bearer {key[:-1]}x"}),
                401,
                "unauthorized",
                "",
            ),
            # 403: a body that names another tenant
            (
                post(
                    "/v1/memories",
                    json={**good, "user_id": other.user_id, "project_id": other.project_id},
                ),
                403,
                "forbidden",
                "another tenant",
            ),
            (
                post(
                    "/v1/search",
                    json={"query": "x", "user_id": other.user_id, "project_id": other.project_id},
                ),
                403,
                "forbidden",
                "",
            ),
            (
                post("/v1/memories", json={**good, "project_id": other.project_id}),
                403,
                "forbidden",
                "",
            ),
            # 404: another tenant's memory is as absent as one that never was
            (
                api.get(f"/v1/memories/{others_id}"),
                404,
                "not_found",
                f"memory {others_id} does not exist",
            ),
            (api.patch(f"/v1/memories/{others_id}", json=good), 404, "not_found", ""),
            (api.delete(f"/v1/memories/{others_id}"), 404, "not_found", ""),
            (
                api.get("/v1/memories/999999999"),
                404,
                "not_found",
                "memory 999999999 does not exist",
            ),
            (
                post("/v1/memories/wait", json={"ids": [others_id], "timeout": 0}),
                404,
                "not_found",
                "",
            ),
            (api.get("/v1/nothing-here"), 404, "not_found", "no such endpoint"),
            # 413: a body over the limit, declared or streamed
            (
                post(
                    "/v1/memories",
                    content=b"x" * (17 * 1024 * 1024),
                    headers={"content-type": "application/json"},
                ),
                413,
                "payload_too_large",
                "limit",
            ),
            (
                post(
                    "/v1/memories",
                    content=iter([b"{" + b" " * (9 * 1024 * 1024), b" " * (9 * 1024 * 1024)]),
                    headers={"content-type": "application/json"},
                ),
                413,
                "payload_too_large",
                "",
            ),
            # 422: well-formed JSON, wrong values
            (post("/v1/memories", json={"raw_data": [1, 2]}), 422, "invalid", "raw_data"),
            (post("/v1/memories", json={**good, "external_id": ""}), 422, "invalid", "external_id"),
            (post("/v1/memories", json={**good, "user_id": "bad\x00id"}), 422, "invalid", ""),
            (post("/v1/memories", json={**good, "wait": -1}), 422, "invalid", "wait"),
            (post("/v1/memories", json={**good, "surprise": 1}), 422, "invalid", "surprise"),
            (post("/v1/search", json={"query": "x", "limit": 0}), 422, "invalid", "limit"),
            (post("/v1/search", json={"query": "x", "mode": "psychic"}), 422, "invalid", "mode"),
            (
                post(
                    "/v1/search", json={"query": "x", "where_filter": {"log_id": {"$regex": "1"}}}
                ),
                422,
                "invalid",
                "",
            ),
            (post("/v1/search", json={"query": "   "}), 422, "invalid", "query"),
            (api.patch(f"/v1/memories/{others_id}", json={"raw_data": "x"}), 404, "not_found", ""),
            (api.get("/v1/memories/not-a-number"), 422, "invalid", "memory_id"),
        ]
    for response, status, code, fragment in cases:
        assert_error(response, status, code, fragment)
    assert tenant_rows(store, tenant) == 0
    assert store.get_memory_log(others_id)["raw_data"] == {"secret": "theirs"}


def test_a_write_that_loses_a_race_is_a_409_conflict(database_url):
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TEMP TABLE race (k int PRIMARY KEY)")
        conn.execute("INSERT INTO race VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation) as raised:
            conn.execute("INSERT INTO race VALUES (1)")
    error = service_error_of(raised.value)
    assert (error.status, error.code) == (409, "conflict")
    assert "retry" in error.message and "\n" not in error.message


def test_readiness_is_503_with_the_reason_until_chroma_and_the_model_are_ready(
    settings, endpoints, embedder
):
    from fastapi.testclient import TestClient

    from memory_pipeline.memory_store import MemoryStore
    from memory_pipeline.service.http_api import create_app
    from memory_pipeline_tests.service_support import free_port

    dead_chroma = dataclasses.replace(endpoints, chroma_host="127.0.0.1", chroma_port=free_port())
    with MemoryStore(settings, dead_chroma, embedder=embedder, migrate=False) as store:
        key = keys.create_key(store.db, Tenant("ready-user", "ready-project")).key
        api = TestClient(create_app(store))  # no lifespan: the model never warms up
        assert api.get("/healthz").json() == {"status": "ok"}
        assert_error(api.get("/readyz"), 503, "unavailable", "chroma")
        assert "model: still loading" in api.get("/readyz").json()["error"]["message"]
        search = api.post(
            "/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert_error(search, 503, "unavailable", "model")


def test_a_key_that_cannot_be_checked_for_postgres_is_503_not_500(
    settings, endpoints, embedder, monkeypatch
):
    from fastapi.testclient import TestClient

    from memory_pipeline.memory_store import MemoryStore
    from memory_pipeline.service.http_api import create_app

    def postgres_down(*_args: object) -> None:
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(keys, "authenticate", postgres_down)
    with MemoryStore(settings, endpoints, embedder=embedder, migrate=False) as store:
        api = TestClient(create_app(store))
        answer = api.get("/v1/status", headers={"Authorization": "Bearer mpk_x"})
    assert_error(answer, 503, "unavailable", "connection refused")


# ------------------------------------------------------------------------ probes and docs
def test_probes_and_openapi_docs_need_no_key(service):
    with client(service, None) as api:
        assert api.get("/healthz").json() == {"status": "ok"}
        assert api.get("/readyz").json() == {"status": "ready"}
        assert api.get("/docs").status_code == 200
        openapi = api.get("/openapi.json").json()
    paths = openapi["paths"]
    assert {
        "/v1/memories",
        "/v1/memories/batch",
        "/v1/memories/{memory_id}",
        "/v1/search",
        "/v1/status",
    } <= set(paths)
    # /docs' Authorize button: every /v1 operation takes a bearer key, the probes none
    assert openapi["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert all(
        op["security"] == [{"bearer": []}]
        for path, ops in paths.items()
        if path.startswith("/v1/")
        for op in ops.values()
    )
    assert "security" not in paths["/healthz"]["get"]


def test_status_shows_a_tenant_key_only_its_tenant(service, store, tenant_key, new_tenant):
    tenant, key = tenant_key
    other = new_tenant("svc-status")
    other_key = keys.create_key(store.db, other).key
    with client(service, other_key) as api:
        api.post("/v1/memories", json={"raw_data": {"content": "other"}})
    with client(service, key) as api:
        api.post("/v1/memories", json={"raw_data": {"content": "mine"}})
        mine = api.get("/v1/status").json()
    assert [t["tenant_key"] for t in mine["tenants"]] == [tenant.key]
    assert mine["totals"]["pending"] == 1
    admin = keys.create_key(store.db, None).key
    with client(service, admin) as api:
        everyone = {t["tenant_key"] for t in api.get("/v1/status").json()["tenants"]}
    assert {tenant.key, other.key} <= everyone


# --------------------------------------------------------------------------------- secrets
def test_no_key_ever_appears_in_the_service_log(service, store, tenant_key):
    _, key = tenant_key
    with client(service, key) as api:
        api.post("/v1/memories", json={"raw_data": {"content": "logged?"}})
        api.get("/v1/memories/999999999")
        api.post("/v1/search", json={"query": "x", "limit": 0})
        api.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    with client(service, key[:-3] + "abc") as wrong:
        wrong.get("/v1/status")
    log = service.log()
    assert '"POST /v1/memories HTTP/1.1" 201' in log  # the access log is on
    secret = key.split("_", 2)[2]  # mpk_<lookup id>_<secret>; the secret may hold "_"
    assert key not in log and secret not in log and secret[:-3] not in log


# ---------------------------------------------------------------------------------- the CLI
def test_keys_cli_creates_lists_and_revokes(service, home_env):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "memory_pipeline.cli", "keys", *args],
            env={**home_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = cli(
        "create", "--user", "cli-user", "--project", "cli:project", "--name", "ci", "--json"
    )
    assert created.returncode == 0, created.stderr
    new = json.loads(created.stdout)
    assert set(new) == {"id", "key"} and new["key"].startswith("mpk_")
    listed = cli("list", "--json")
    assert listed.returncode == 0 and new["key"] not in listed.stdout
    row = next(r for r in json.loads(listed.stdout) if r["id"] == new["id"])
    assert (row["user_id"], row["project_id"], row["name"]) == ("cli-user", "cli:project", "ci")
    assert "secret_sha256" not in row and row["revoked_at"] is None

    with client(service, new["key"]) as api:
        assert api.get("/v1/status").status_code == 200
        assert cli("revoke", str(new["id"])).returncode == 0
        assert_error(api.get("/v1/status"), 401, "unauthorized")
    both = cli("create", "--admin", "--user", "u")
    assert both.returncode != 0 and "--admin" in both.stderr and "Traceback" not in both.stderr
    missing = cli("revoke", "987654321")
    assert missing.returncode != 0 and "does not exist" in missing.stderr

"""Load, bounded and local: 32 concurrent clients mix adds and searches against one service.

No request fails, no memory is stored twice, and every add is accounted for: each returned id
holds the record that was sent, and the pipeline (the test's embedding worker, standing in for
the sensor of ``up``) embeds them all. It runs 30 s as the issue asks
(``MEMORY_PIPELINE_LOAD_TEST_SECONDS`` changes that); no timing is asserted here, speed is
``make bench``'s (section E).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from memory_pipeline.service import keys

CLIENTS = 32
TENANTS = 4
SECONDS = float(os.environ.get("MEMORY_PIPELINE_LOAD_TEST_SECONDS", "30"))
QUERIES = ("what failed in the deploy?", "who owns the importer", "cache invalidation", "Lisbon")


def test_32_clients_adding_and_searching_for_30_seconds(
    service, store, embedding_worker, new_tenant
):
    tenants = [new_tenant("load") for _ in range(TENANTS)]
    embedding_worker.watch(*tenants)
    tenant_keys = [keys.create_key(store.db, t).key for t in tenants]
    stop_at = time.monotonic() + SECONDS
    lock = threading.Lock()
    added: dict[tuple[int, str], int] = {}  # (tenant index, external id) -> id
    repeats: list[tuple[int, str, int]] = []  # a re-sent add, and the id it answered
    errors: list[str] = []
    counts: Counter[str] = Counter()

    def run_client(client_no: int) -> None:
        rng = random.Random(client_no)
        which = client_no % TENANTS
        headers = {"Authorization": f"Bearer {tenant_keys[which]}"}
        sent: list[str] = []
        with httpx.Client(base_url=service.base_url, headers=headers, timeout=120) as api:
            while time.monotonic() < stop_at:
                roll = rng.random()
                try:
                    if roll < 0.5:
                        external_id = f"c{client_no}-{len(sent)}"
                        body = {
                            "raw_data": {"content": f"note {external_id}: {rng.choice(QUERIES)}"},
                            "external_id": external_id,
                        }
                        response = api.post("/v1/memories", json=body)
                        if response.status_code != 201:
                            raise AssertionError(f"add {response.status_code}: {response.text}")
                        sent.append(external_id)
                        with lock:
                            added[(which, external_id)] = response.json()["id"]
                            counts["add"] += 1
                    elif roll < 0.55 and sent:  # a retried add: must answer the same id
                        external_id = rng.choice(sent)
                        body = {"raw_data": {"content": "retried"}, "external_id": external_id}
                        response = api.post("/v1/memories", json=body)
                        if response.status_code != 200:
                            raise AssertionError(f"repeat {response.status_code}: {response.text}")
                        with lock:
                            repeats.append((which, external_id, response.json()["id"]))
                            counts["repeat"] += 1
                    else:
                        body = {"query": rng.choice(QUERIES), "limit": 5}
                        response = api.post("/v1/search", json=body)
                        if response.status_code != 200:
                            raise AssertionError(f"search {response.status_code}: {response.text}")
                        with lock:
                            counts["search"] += 1
                except Exception as exc:
                    with lock:
                        errors.append(f"client {client_no}: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(run_client, range(CLIENTS)))

    assert not errors, errors[:5]
    assert counts["add"] > CLIENTS and counts["search"] > CLIENTS, counts
    ids = list(added.values())
    assert len(set(ids)) == len(ids), "two adds answered the same id"
    for which, external_id, memory_id in repeats:
        assert added[(which, external_id)] == memory_id
    for which, tenant in enumerate(tenants):
        mine = {e: i for (w, e), i in added.items() if w == which}
        counted = next(t for t in store.status()["tenants"] if t["tenant_key"] == tenant.key)
        states = ("pending", "embedded", "skipped", "failed", "dead")
        assert sum(int(counted[s]) for s in states) == len(mine), tenant
        for external_id, memory_id in mine.items():
            row = store.get_memory_log(memory_id)
            assert (row["user_id"], row["project_id"]) == (tenant.user_id, tenant.project_id)
            assert row["external_id"] == external_id
            assert row["raw_data"]["content"].startswith(f"note {external_id}:")
    states_now = store.wait_until_embedded(ids, timeout=300)
    assert set(states_now.values()) == {"embedded"}

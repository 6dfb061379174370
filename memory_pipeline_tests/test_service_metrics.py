"""``/metrics`` of a real ``memory-pipeline serve``, parsed with prometheus-client's own parser."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from memory_pipeline.service import keys
from memory_pipeline.storage import pipeline_metrics

TIMEOUT = 150


def scrape(service, key: str) -> dict[str, list]:
    """Each metric family's samples, by family name."""
    response = httpx.get(
        f"{service.base_url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def request_counts(families: dict[str, list]) -> Counter:
    return Counter(
        {
            (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
            for s in families["memory_pipeline_http_requests"]
            if s.name.endswith("_total")
        }
    )


def histogram(families: dict[str, list], name: str, suffix: str, **labels: str) -> float:
    return sum(
        s.value
        for s in families[name]
        if s.name == name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_need_an_admin_key(service, store, new_tenant):
    tenant_key = keys.create_key(store.db, new_tenant("metrics"), "metrics").key
    assert httpx.get(f"{service.base_url}/metrics", timeout=TIMEOUT).status_code == 401
    refused = httpx.get(
        f"{service.base_url}/metrics",
        headers={"Authorization": f"Bearer {tenant_key}"},
        timeout=TIMEOUT,
    )
    assert refused.status_code == 403
    assert "admin key" in refused.json()["error"]["message"]


def test_request_counts_and_stage_times_match_the_traffic_sent(service, store, new_tenant):
    tenant = new_tenant("metrics")
    key = keys.create_key(store.db, tenant, "metrics").key
    admin = keys.create_key(store.db, None, "metrics admin").key
    sent: Counter = Counter()
    before = scrape(service, admin)
    sent["/metrics", "GET", "200"] += 1  # counted once its answer is sent
    with httpx.Client(
        base_url=service.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=TIMEOUT
    ) as api:
        ids = []
        for text in ("the train leaves at nine", "lunch is at noon", "standup moved to ten"):
            response = api.post("/v1/memories", json={"raw_data": {"content": text}})
            assert response.status_code == 201
            ids.append(response.json()["id"])
            sent["/v1/memories", "POST", "201"] += 1
        for log_id in ids[:2]:
            assert api.get(f"/v1/memories/{log_id}").status_code == 200
            sent["/v1/memories/{memory_id}", "GET", "200"] += 1
        assert api.get("/v1/memories/987654321").status_code == 404
        sent["/v1/memories/{memory_id}", "GET", "404"] += 1
        for query in ("when does the train leave?", "what time is lunch?"):
            assert api.post("/v1/search", json={"query": query}).status_code == 200
            sent["/v1/search", "POST", "200"] += 1
        assert api.get("/v1/no-such-endpoint").status_code == 404
        sent["unmatched", "GET", "404"] += 1
    assert httpx.get(f"{service.base_url}/v1/status", timeout=TIMEOUT).status_code == 401
    sent["/v1/status", "GET", "401"] += 1
    after = scrape(service, admin)

    assert request_counts(after) - request_counts(before) == sent
    latency = "memory_pipeline_http_request_duration_seconds"
    for (route, method, status), count in sent.items():
        labels = {"route": route, "method": method, "status": status}
        grown = histogram(after, latency, "_count", **labels) - histogram(
            before, latency, "_count", **labels
        )
        assert grown == count, labels
    stage = "memory_pipeline_search_stage_duration_seconds"
    searches = histogram(after, stage, "_count", stage="search") - histogram(
        before, stage, "_count", stage="search"
    )
    assert searches == 2
    batch = "memory_pipeline_query_batch_size"
    encodes = histogram(after, batch, "_count") - histogram(before, batch, "_count")
    encoded = histogram(after, batch, "_sum") - histogram(before, batch, "_sum")
    assert 1 <= encodes <= 2 and encoded == 2  # two one-query searches, batched or not
    assert (
        histogram(after, stage, "_count", stage="embed_queries")
        - histogram(before, stage, "_count", stage="embed_queries")
        == encodes
    )

    # nobody embeds this tenant's rows: they wait, and the gauges see them
    gauges = {f: s for f, s in after.items() if f.startswith("memory_pipeline_memory_rows")}
    pending = next(
        s.value for s in gauges["memory_pipeline_memory_rows"] if s.labels["status"] == "pending"
    )
    assert pending >= 3
    assert after["memory_pipeline_oldest_pending_age_seconds"][0].value > 0
    with store.db.autocommit_connection() as conn:
        direct = pipeline_metrics.read_gauges(conn)
    assert direct.rows_by_status["pending"] >= 3
    assert set(direct.rows_by_status) == {
        s.labels["status"] for s in gauges["memory_pipeline_memory_rows"]
    }


def test_the_grafana_dashboard_uses_only_names_the_service_exposes(service, store):
    admin = keys.create_key(store.db, None, "grafana check").key
    exposed = set(scrape(service, admin))
    dashboard = json.loads(
        (Path(__file__).parents[1] / "docs/grafana-memory-pipeline.json").read_text()
    )
    used = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"memory_pipeline_[a-z_]+", target["expr"])
    }
    assert used and used <= exposed, used - exposed

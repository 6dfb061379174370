"""End to end: `memory-pipeline up` in a subprocess; the sensor-launched run embeds new rows."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from memory_pipeline.local_services import ensure_services, services_status
from memory_pipeline.local_services.local_chroma import _free_port
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.settings import Settings
from memory_pipeline_tests.fault_harness import wait_for

pytestmark = pytest.mark.e2e
READY_SECONDS = 240
EMBED_SECONDS = 240


def _wait_for_lines(proc: subprocess.Popen, needles: list[str], deadline: float) -> list[str]:
    """The first line `up` prints with each needle, in the needles' order."""
    seen: list[str] = []
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(needles):
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            found.update({n: line for n in needles if n in line and n not in found})
        elif proc.poll() is not None:
            break
    missing = [n for n in needles if n not in found]
    assert not missing, f"`up` never printed {missing!r}; output: {''.join(seen)}"
    return [found[n] for n in needles]


def _check_the_service_answers_the_admin_key(home: Path, port: int) -> None:
    """`up` wrote an admin key (mode 0600) on first start and serves the memory service."""
    key_file = home / "service" / "admin.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()

    def answered() -> bool:
        try:
            status = httpx.get(
                f"http://127.0.0.1:{port}/v1/status",
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
        except httpx.TransportError:
            return False
        if status.status_code != 200:
            return False
        assert "tenants" in status.json()
        return True

    wait_for(answered, READY_SECONDS, "the memory service answering", interval=0.5)


def test_up_embeds_new_rows_through_the_sensor_then_stops_everything(embedder):
    home = Path(tempfile.mkdtemp(prefix="mpe-", dir="/tmp"))
    port = _free_port("127.0.0.1")
    env = {
        **os.environ,
        "MEMORY_PIPELINE_HOME": str(home),
        "MEMORY_PIPELINE_SENSOR_INTERVAL_SECONDS": "5",
    }
    for name in ("MEMORY_PIPELINE_DATABASE_URL", "MEMORY_PIPELINE_CHROMA_HOST", "DAGSTER_HOME"):
        env.pop(name, None)
    service_port = _free_port("127.0.0.1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memory_pipeline.cli",
            "up",
            "--port",
            str(port),
            "--service-port",
            str(service_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    descendants: list[psutil.Process] = []
    try:
        key_line, service_line, ui_line = _wait_for_lines(
            proc,
            ["admin API key", "Memory service", "Dagster UI"],
            time.monotonic() + READY_SECONDS,
        )
        assert str(home / "service" / "admin.key") in key_line and "0600" in key_line
        assert f"http://127.0.0.1:{service_port}" in service_line
        assert f"http://127.0.0.1:{port}" in ui_line
        descendants = psutil.Process(proc.pid).children(recursive=True)
        _check_the_service_answers_the_admin_key(home, service_port)

        settings = Settings(home=home)
        with MemoryStore(settings, ensure_services(settings), embedder=embedder) as store:
            ids = [
                store.create_memory_log(
                    "e2e-user", "e2e:project", {"content": "the release train leaves on Thursdays"}
                ),
                store.create_memory_log(
                    "e2e-user",
                    "e2e:project",
                    {"speaker": "Ana", "text": "I adopted a grey cat named Pixel"},
                ),
                store.create_memory_log(
                    "other-user", "e2e:project", {"content": "another tenant's cat story"}
                ),
            ]
            states = store.wait_until_embedded(ids, timeout=EMBED_SECONDS)
            assert set(states.values()) == {"embedded"}
            results = store.search_similar_memories(
                "what is the name of the cat?", "e2e-user", "e2e:project"
            )
            assert results[0].log_id == ids[1]
            assert ids[2] not in {r.log_id for r in results}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0
    gone, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    status = services_status(Settings(home=home))
    assert status["postgres"]["running"] is False
    assert status["chroma"]["running"] is False
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, f"processes of the home still running: {[p.pid for p in leftovers]}"


def test_up_refuses_a_busy_port_with_a_clear_error(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        home = Path(tempfile.mkdtemp(prefix="mpb-", dir="/tmp"))
        env = {**os.environ, "MEMORY_PIPELINE_HOME": str(home)}
        proc = subprocess.run(
            [sys.executable, "-m", "memory_pipeline.cli", "up", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode != 0
    assert "already in use" in proc.stderr
    assert "Traceback" not in proc.stderr

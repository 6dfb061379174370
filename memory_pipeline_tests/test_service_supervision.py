"""`up` supervises the memory service as it does Postgres, Chroma and ``dagster dev``: a service
that dies is started again, one whose Chroma moved to another port is restarted onto it, and one
that dies right after its start stops `up` with the log's address (decision 0101)."""

from __future__ import annotations

import os
import signal

import pytest

from memory_pipeline.service.launcher import MIN_SERVICE_LIFETIME_SECONDS, MemoryService
from memory_pipeline_tests.fault_harness import wait_for
from memory_pipeline_tests.service_support import READY_SECONDS, free_port


def _wait_until_ready(service: MemoryService) -> None:
    def ready() -> bool:
        assert not service.exited(), service.log_path.read_text(errors="replace")[-2000:]
        return service.ready()

    wait_for(ready, READY_SECONDS, "the memory service ready", interval=0.3)


def _kill(service: MemoryService) -> int:
    assert service.process is not None
    pid = service.process.pid
    os.killpg(pid, signal.SIGKILL)
    service.process.wait()
    return pid


def test_up_restarts_the_memory_service_when_it_dies_or_chroma_moves(
    settings, endpoints, home_env, monkeypatch
):
    for name, value in home_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MEMORY_PIPELINE_DATABASE_URL", raising=False)
    monkeypatch.delenv("MEMORY_PIPELINE_CHROMA_HOST", raising=False)
    said: list[str] = []
    service = MemoryService(settings, "127.0.0.1", free_port())
    service.start()
    try:
        assert service.chroma_address == (endpoints.chroma_host, endpoints.chroma_port)
        _wait_until_ready(service)
        service.announce_when_ready(said.append)
        assert said == [f"Memory service: {service.base_url}  (API docs /docs, MCP /mcp)"]

        service.supervise(said.append)  # alive, Chroma where it was: nothing to do
        first = _kill(service)
        service.started_at -= MIN_SERVICE_LIFETIME_SECONDS  # it had run long enough
        service.supervise(said.append)
        assert service.process is not None and service.process.pid != first
        assert "exited with code -9; starting it again" in said[-1]
        _wait_until_ready(service)

        service.chroma_address = ("127.0.0.1", 1)  # as if Chroma had moved since its start
        second = service.process.pid
        service.supervise(said.append)
        assert service.process.pid != second
        assert said[-1] == (
            f"Chroma now listens on port {endpoints.chroma_port}; restarting the memory service"
        )
        assert service.chroma_address == (endpoints.chroma_host, endpoints.chroma_port)

        _kill(service)  # dies right after its start: restarting would only fail again
        with pytest.raises(RuntimeError, match=r"exited with code -9; see .*service\.log"):
            service.supervise(said.append)
    finally:
        service.terminate()

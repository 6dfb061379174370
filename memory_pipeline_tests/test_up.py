"""`up` owns its home: one `up` per home, and at start it frees the runs whose workers died."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from dagster import DagsterRunStatus
from dagster._core.events import EngineEventData

from memory_pipeline.defs.instance import fail_orphaned_runs, fail_runs_whose_worker_exited
from memory_pipeline.local_services.home_lock import exclusive_home_lock
from memory_pipeline.settings import Settings
from memory_pipeline.up import run_up
from memory_pipeline_tests.dagster_runs import record_run


def test_runs_that_hold_a_worker_are_failed_and_the_others_left_alone(instance):
    statuses = [
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
        DagsterRunStatus.SUCCESS,
    ]
    runs = {s: record_run(instance, status=s).run_id for s in statuses}

    freed = fail_orphaned_runs(instance, "its worker is gone")

    after = {s: instance.get_run_by_id(run_id).status for s, run_id in runs.items()}
    assert after == {
        DagsterRunStatus.NOT_STARTED: DagsterRunStatus.FAILURE,
        DagsterRunStatus.STARTING: DagsterRunStatus.FAILURE,
        DagsterRunStatus.STARTED: DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELING: DagsterRunStatus.CANCELED,
        DagsterRunStatus.SUCCESS: DagsterRunStatus.SUCCESS,
    }
    assert len(freed) == 4


def _started_by(instance, pid: int | None) -> str:
    run = record_run(instance, status=DagsterRunStatus.STARTED)
    if pid is not None:  # what the code server's worker records as it starts
        instance.report_engine_event(
            f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid)
        )
    return run.run_id


def test_started_runs_whose_worker_exited_unrecorded_are_failed_while_up_runs(instance):
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = _started_by(instance, int(exited.stdout))
    alive = _started_by(instance, os.getpid())
    unknown = _started_by(instance, None)  # not started yet: run monitoring's start timeout
    done = record_run(instance, status=DagsterRunStatus.SUCCESS).run_id

    freed = fail_runs_whose_worker_exited(instance, "its run worker exited")

    assert freed == [dead]
    status = {r: instance.get_run_by_id(r).status for r in (dead, alive, unknown, done)}
    assert status == {
        dead: DagsterRunStatus.FAILURE,
        alive: DagsterRunStatus.STARTED,
        unknown: DagsterRunStatus.STARTED,
        done: DagsterRunStatus.SUCCESS,
    }
    assert fail_runs_whose_worker_exited(instance, "again") == []


def test_a_second_up_of_the_same_home_is_refused(tmp_path):
    settings = Settings(home=tmp_path)
    with (
        exclusive_home_lock(tmp_path, "up"),
        pytest.raises(RuntimeError, match="another `memory-pipeline up` is running"),
    ):
        run_up(settings, "127.0.0.1", 1, 2, announce=print)


STAND_IN_SERVER = """
import http.server, sys, threading
class Wedged(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/api/v2/heartbeat" and sys.argv[1] == "wedged":
            threading.Event().wait()  # what Chroma did after its SQLite hit a full disk
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Wedged)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def _stand_in_chroma(settings: Settings, mode: str) -> Iterator[subprocess.Popen]:
    """A server at the home's Chroma address: ``wedged`` answers only its heartbeat."""
    stand_in = subprocess.Popen(
        [sys.executable, "-c", STAND_IN_SERVER, mode],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        port = int(stand_in.stdout.readline())
        settings.chroma_data_dir.mkdir(parents=True, exist_ok=True)
        (settings.chroma_data_dir / "server.json").write_text(
            f'{{"pid": {stand_in.pid}, "host": "127.0.0.1", "port": {port}}}'
        )
        yield stand_in
    finally:
        if stand_in.poll() is None:
            stand_in.kill()


def test_a_chroma_that_answers_its_heartbeat_but_no_request_is_killed(tmp_path, monkeypatch):
    from memory_pipeline import up

    settings = Settings(home=tmp_path)
    with _stand_in_chroma(settings, "wedged") as stand_in:
        monkeypatch.setattr(up, "CHROMA_PROBE_TIMEOUT_SECONDS", 0.5)
        said: list[str] = []
        services = up.ServiceSupervisor(settings, said.append)
        services.restart_stuck_chroma()  # one unanswered probe is not yet a wedge
        assert stand_in.poll() is None and said == []

        monkeypatch.setattr(up, "CHROMA_WEDGED_SECONDS", 0.0)
        services.next_chroma_probe = 0.0
        services.restart_stuck_chroma()
        assert stand_in.wait(timeout=30) == -9
        assert len(said) == 1 and said[0].startswith("Chroma answered no request for")


def test_a_chroma_that_hit_a_full_disk_is_restarted_once_space_is_back(tmp_path, monkeypatch):
    from memory_pipeline import up

    settings = Settings(home=tmp_path)
    with _stand_in_chroma(settings, "answering") as stand_in:
        log = settings.chroma_data_dir / "server.log"
        log.write_text("ERROR an old error: database or disk is full\n")  # before this `up`
        said: list[str] = []
        services = up.ServiceSupervisor(settings, said.append)
        services.restart_stuck_chroma()
        assert stand_in.poll() is None and said == []

        with log.open("a") as f:
            f.write("ERROR Query error: (code: 13) database or disk is full\n")
        monkeypatch.setattr(up, "_space_is_back", lambda path: False)  # still full: wait
        services.next_chroma_probe = 0.0
        services.restart_stuck_chroma()
        assert stand_in.poll() is None and said == []

        monkeypatch.undo()
        services.next_chroma_probe = 0.0
        services.restart_stuck_chroma()
        assert stand_in.wait(timeout=30) == -9
        assert len(said) == 1 and said[0].startswith("Chroma hit a full disk")

"""The service's store under faults: a replica killed mid-operation, the database restarting,
a request racing the end of another, a second process on one SQLite file, a database that
takes no writes.

Each test reproduces a way work used to be lost or stuck (issue 15) through the real
store and the real worker (SQLite and a PostgreSQL server on 127.0.0.1 started by the
tests), with a runner that only records what it was asked to do.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.automation.databases import PostgresStore, open_store
from gke_inference.automation.errors import AutomationError
from gke_inference.automation.store import (
    INTERRUPTED,
    Operation,
    SQLStore,
    StoreUnavailableError,
    new_id,
)
from gke_inference.automation.worker import OperationWorker, Redactor
from tests.support.postgres import required_postgres, start_postgres

REPO = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((REPO / "workloads" / "examples" / "gemma-3-1b-l4.yaml").read_text())
SPEC["name"] = "gemma"


class Result:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def to_json(self) -> dict[str, Any]:
        return {"operation": self.kind, "changes": {"create": 1}, "outputs": {"url": "u"}}


class RecordingRunner:
    """Succeeds at once (or fails where told); remembers what ran."""

    name = "recording"

    def __init__(self, fail: set[str] | None = None) -> None:
        self.ran: list[tuple[str, str]] = []
        self.fail = fail or set()

    def run(self, kind: str, target: Any, on_output: Any = None) -> Result:
        self.ran.append((kind, target.name))
        if kind in self.fail:
            raise AutomationError(f"{kind} failed")
        return Result(kind)


def worker(store: SQLStore, runner: RecordingRunner | None = None) -> OperationWorker:
    return OperationWorker(runner or RecordingRunner(), store, workers=4, redact=Redactor([]))


def wait_final(store: SQLStore, operation: str, timeout: float = 30) -> Operation:
    deadline = time.monotonic() + timeout
    while True:
        op = store.get_operation(operation)
        assert op is not None
        if op.status in ("succeeded", "failed"):
            return op
        assert time.monotonic() < deadline, f"{operation} still {op.status}"
        time.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStore]:
    target = (
        str(tmp_path / "service.db")
        if request.param == "sqlite"
        else required_postgres().create_database()
    )
    s = open_store(target)
    yield s
    s.close()


def on_finish(store: SQLStore, hook: Callable[[str], None]) -> None:
    """Run ``hook(operation id)`` the moment an operation's end is recorded, in the
    finishing thread (while it still holds the workload's lock)."""
    finish = store.finish

    def finish_then_hook(operation_id: str, status: str, **kwargs: Any) -> bool:
        done = finish(operation_id, status, **kwargs)
        if done:
            hook(operation_id)
        return done

    store.finish = finish_then_hook  # type: ignore[method-assign]


# --------------------------------------------------------------------------- races at the end


def test_the_next_operation_submitted_as_one_finishes_is_not_refused(store: SQLStore) -> None:
    """It used to fail with "busy on another replica": the finished operation still held the
    workload's lock while it wrote its last rows."""
    w = worker(store)
    follow: list[Operation] = []
    submitted = threading.Event()

    def submit_next(operation_id: str) -> None:
        if not follow:
            follow.append(w.submit("dev", "gemma", "up", SPEC))
            submitted.set()
            time.sleep(0.3)  # the finishing worker still holds the lock

    on_finish(store, submit_next)
    first = w.submit("dev", "gemma", "up", SPEC)
    assert wait_final(store, first.id).status == "succeeded"
    assert submitted.wait(timeout=30)
    second = wait_final(store, follow[0].id)
    assert (second.status, second.error) == ("succeeded", None)
    record = store.get_workload("dev", "gemma")
    assert record is not None and record.status == "deployed"
    assert record.last_operation == second.id


def test_an_up_accepted_as_a_destroy_finishes_is_not_erased_by_it(store: SQLStore) -> None:
    """The destroy's late delete used to remove the record of the up that followed it: the
    stack deployed, GET answering 404."""
    w = worker(store)
    deployed = w.submit("dev", "gemma", "up", SPEC)
    assert wait_final(store, deployed.id).status == "succeeded"
    follow: list[Operation] = []
    submitted = threading.Event()

    def up_after_destroy(operation_id: str) -> None:
        if operation_id != deployed.id and not follow:
            follow.append(w.submit("dev", "gemma", "up", SPEC))
            submitted.set()

    on_finish(store, up_after_destroy)
    destroy = w.submit("dev", "gemma", "destroy", None)
    assert wait_final(store, destroy.id).status == "succeeded"
    assert submitted.wait(timeout=30)
    assert wait_final(store, follow[0].id).status == "succeeded"
    record = store.get_workload("dev", "gemma")
    assert record is not None, "the destroy erased the record of the up after it"
    assert (record.status, record.last_operation) == ("deployed", follow[0].id)


def test_a_failed_up_never_touches_the_record_of_the_operation_after_it(
    store: SQLStore,
) -> None:
    """Its end and its record are one write; the next operation's record is its own."""
    w = worker(store, RecordingRunner(fail={"up"}))
    seen: dict[str, Any] = {}
    looked = threading.Event()

    def look(operation_id: str) -> None:
        record = store.get_workload("dev", "gemma")
        seen[operation_id] = (record.status, store.active_operation("dev", "gemma"))  # type: ignore[union-attr]
        looked.set()

    on_finish(store, look)
    failed = w.submit("dev", "gemma", "up", SPEC)
    assert wait_final(store, failed.id).status == "failed"
    assert looked.wait(timeout=30)
    # the moment its end was visible, the record already said failed: never
    # "deploying" with no active operation
    assert seen[failed.id] == ("failed", None)


# --------------------------------------------------------------------------- SQLite: one process


def test_a_second_process_on_one_sqlite_file_is_refused_before_it_recovers(
    tmp_path: Path,
) -> None:
    """A second `serve` on the same file used to mark the live service's running
    operation failed during its startup recovery, then exit on its taken port."""
    db = tmp_path / "service.db"
    live = open_store(db)
    try:
        op = Operation(new_id(), "dev", "gemma", "up", spec=SPEC)
        live.submit(op, SPEC)
        live.mark_running(op.id)
        script = textwrap.dedent(
            f"""
            import sys
            from gke_inference.automation.databases import open_store
            from gke_inference.automation.store import StoreUnavailableError
            try:
                store = open_store({str(db)!r})
            except StoreUnavailableError as exc:
                print(exc)
                sys.exit(2)
            store.recover()
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert "is in use by another gke-inference service" in done.stdout
        assert live.get_operation(op.id).status == "running"  # type: ignore[union-attr]
    finally:
        live.close()
    # once the first process is gone, the file is free again
    again = open_store(db)
    assert again.recover() == [op.id]
    again.close()


def test_serve_on_a_sqlite_file_in_use_is_exit_2_with_one_message(tmp_path: Path) -> None:
    db = tmp_path / "service.db"
    live = open_store(db)
    try:
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "gke-inference"), "serve", "--runner", "offline",
             "--db", str(db), "--port", "18089"],  # refused before it binds
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "GKE_INFERENCE_API_TOKEN": "t" * 40,
                 "GKE_INFERENCE_STATE_DIR": str(tmp_path / "state")},
        )  # fmt: skip
    finally:
        live.close()
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "in use by another gke-inference service" in lines[0], lines
    assert "Traceback" not in done.stderr


def _open_as(uid: int, gid: int, db: Path) -> tuple[int, str]:
    """open_store(db) in a forked child running as uid/gid: (exit status, what it said).
    Forked, not exec'd: the interpreter may live where that user cannot read."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code, message = 0, "opened"
        try:
            os.setgid(gid)
            os.setuid(uid)
            open_store(db)
        except StoreUnavailableError as exc:
            code, message = 2, str(exc)
        except BaseException as exc:  # noqa: BLE001 - report anything else as it is
            code, message = 3, f"{type(exc).__name__}: {exc}"
        os.write(write, message.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), said


def test_a_database_this_process_cannot_write_is_refused_at_start() -> None:
    """It used to start, answer GETs, then 500 with a traceback on every write."""
    base = Path(tempfile.mkdtemp(prefix="gke-inference-ro-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)  # noqa: S103 - the other user must reach the file
        db = base / "service.db"
        open_store(db).close()
        lock = db.with_name(db.name + ".lock")
        os.chmod(lock, 0o666)  # noqa: S103 - the lock can be taken, the database not written
        if os.geteuid() == 0:  # root writes read-only files: open it as nobody
            nobody = pwd.getpwnam("nobody")
            uid, gid = nobody.pw_uid, nobody.pw_gid
        else:
            os.chmod(db, 0o444)
            uid, gid = os.getuid(), os.getgid()
        code, said = _open_as(uid, gid, db)
        assert code == 2, said
        assert said.startswith(f"{db} is not writable"), said
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- PostgreSQL replicas

REPLICA = """
import sys, time
from gke_inference.automation.databases import open_store
from gke_inference.automation.store import Operation, new_id
store = open_store(sys.argv[1])
op = Operation(new_id(), "dev", "gemma", "up", spec={"name": "gemma"})
store.submit(op, {"name": "gemma"})
store.mark_running(op.id)
print(op.id, flush=True)
time.sleep(600)
"""


def test_a_killed_replicas_operation_is_released_by_a_live_one_within_a_lease() -> None:
    """kill -9 of the replica running an operation used to leave it running, and the
    workload answering 409, until some replica restarted."""
    url = required_postgres().create_database()
    live = open_store(url)
    assert isinstance(live, PostgresStore)
    live.lease = timedelta(seconds=2)
    replica = subprocess.Popen(
        [sys.executable, "-c", REPLICA, url], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert replica.stdout is not None
        operation = replica.stdout.readline().strip()
        assert live.maintain() == []  # alive: its lock is held
        replica.kill()  # SIGKILL: no cleanup, no goodbye
        replica.wait(timeout=10)
        started = time.monotonic()
        while operation not in live.maintain():
            assert time.monotonic() - started < 10, "the dead replica's work is still held"
            time.sleep(0.2)
        released = time.monotonic() - started
        op = live.get_operation(operation)
        assert op is not None and op.status == "failed"
        assert op.error is not None and op.error.startswith(INTERRUPTED)
        assert "stopped; failed by a live replica" in op.error  # the record says so
        assert live.active_operation("dev", "gemma") is None
        record = live.get_workload("dev", "gemma")
        assert record is not None and record.status == "failed"
        assert released < 2 + 2, released  # within about a lease of the kill
    finally:
        replica.kill()
        live.close()


def test_a_database_restart_does_not_fail_work_a_live_replica_still_runs() -> None:
    """After PostgreSQL restarted, the live replica's liveness lock was gone for good, and a
    replica starting later failed its in-flight operation while it still completed it."""
    server = required_postgres(start_postgres)  # a server of its own: it is restarted
    try:
        url = server.create_database()
        live = open_store(url)
        op = Operation(new_id(), "dev", "gemma", "up", spec=SPEC)
        live.submit(op, SPEC)
        live.mark_running(op.id)
        server.restart(down_seconds=1.0)
        # the maintenance loop's next tick: heartbeat, lock retaken
        deadline = time.monotonic() + 20
        while True:
            try:
                live.maintain()
                break
            except Exception:  # noqa: BLE001 - the first connection after a restart may fail
                assert time.monotonic() < deadline
                time.sleep(0.2)
        later = open_store(url)
        assert later.recover() == []
        assert later.get_operation(op.id).status == "running"  # type: ignore[union-attr]
        assert live.finish(op.id, "succeeded", workload="deployed", outputs={})
        record = later.get_workload("dev", "gemma")
        assert record is not None and record.status == "deployed"
        later.close()
        live.close()
    finally:
        server.stop()


def test_the_maintenance_loop_survives_a_database_outage() -> None:
    """A tick that cannot reach the database is logged and retried, and the heartbeat
    resumes once the database is back."""
    from gke_inference.automation.worker import Maintenance

    server = required_postgres(start_postgres)
    try:
        store = open_store(server.create_database())
        loop = Maintenance(store, interval=0.1)
        loop.start()
        server.restart(down_seconds=1.0)
        before = store.heartbeats()[store.instance_id]
        deadline = time.monotonic() + 20
        while store.heartbeats()[store.instance_id] <= before:
            assert time.monotonic() < deadline, "the heartbeat never resumed"
            time.sleep(0.1)
        assert loop._thread.is_alive()
        loop.stop()
        store.close()
    finally:
        server.stop()


# --------------------------------------------------------------------------- readiness


def test_readyz_reports_a_database_that_takes_no_writes(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from gke_inference.automation.service import create_app

    store = open_store(tmp_path / "service.db")
    app = create_app(RecordingRunner(), store, token="t" * 40)  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").status_code == 200

        def broken() -> None:
            raise StoreUnavailableError("database or disk is full")

        store.heartbeat = broken  # type: ignore[method-assign]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "detail": "the database does not take writes (StoreUnavailableError)"
        }
        assert client.get("/healthz").status_code == 200  # alive, not ready
    store.close()


# --------------------------------------------------------------------------- outages mid-run


class GatedRunner(RecordingRunner):
    """Blocks every operation until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def run(self, kind: str, target: Any, on_output: Any = None) -> Result:
        self.entered.set()
        assert self.gate.wait(timeout=60)
        if on_output is not None:
            on_output("done")
        return super().run(kind, target, on_output)


def test_an_operation_running_through_a_database_restart_is_recorded() -> None:
    """Its worker used to hit the error and leave it running (the workload 409) forever."""
    server = required_postgres(start_postgres)
    try:
        store = open_store(server.create_database())
        runner = GatedRunner()
        w = worker(store, runner)
        op = w.submit("dev", "gemma", "up", SPEC)
        assert runner.entered.wait(timeout=30)
        server.restart(down_seconds=1.0)
        runner.gate.set()  # it ends while the database is (or was just) down
        done = wait_final(store, op.id, timeout=60)
        assert done.status == "succeeded"
        assert store.active_operation("dev", "gemma") is None
        assert store.get_workload("dev", "gemma").status == "deployed"  # type: ignore[union-attr]
        w.shutdown()
        store.close()
    finally:
        server.stop()


def test_an_end_the_store_refused_is_recorded_once_it_takes_writes_again(
    tmp_path: Path,
) -> None:
    """A store down for longer than the retries (a full disk): the end is kept and written
    by the next maintenance tick, so the workload does not stay busy."""
    store = open_store(tmp_path / "service.db")
    w = worker(store)
    w.retry_seconds = 0.2
    finish = store.finish
    full = threading.Event()
    full.set()

    def disk_full(*args: Any, **kwargs: Any) -> bool:
        if full.is_set():
            raise StoreUnavailableError("database or disk is full")
        return finish(*args, **kwargs)

    store.finish = disk_full  # type: ignore[method-assign]
    op = w.submit("dev", "gemma", "up", SPEC)
    deadline = time.monotonic() + 30
    while op.id not in w.unrecorded:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.get_operation(op.id).status == "running"  # type: ignore[union-attr]
    assert w.flush() == 1  # still full
    full.clear()
    assert w.flush() == 0
    assert store.get_operation(op.id).status == "succeeded"  # type: ignore[union-attr]
    assert store.active_operation("dev", "gemma") is None
    w.shutdown()
    store.close()


# --------------------------------------------------------------------------- load


def test_log_lines_reuse_pooled_postgres_sessions() -> None:
    """Each stored log line used to open a PostgreSQL session of its own (about 19 per
    preview); the store borrows pooled ones (bench/store_throughput.py has the rates)."""
    import psycopg

    url = required_postgres().create_database()
    store = open_store(url)
    op = Operation(new_id(), "dev", "gemma", "preview", spec=SPEC)
    store.submit(op)

    def sessions() -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        assert row is not None
        return int(row[0])

    before = sessions()
    for n in range(100):
        store.append_log(op.id, f"line {n}")
    opened = sessions() - before - 1  # the counting session itself
    store.close()
    assert opened <= 2, f"{opened} sessions for 100 log lines"


def test_a_keyword_value_connection_string_opens_postgres_not_a_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`host=... dbname=...` used to be taken for a SQLite path (a file of that name)."""
    url = required_postgres().create_database()
    server, dbname = url.rsplit("/", 1)
    host, port = server.rsplit("@", 1)[1].split(":")
    dsn = f"host={host} port={port} user=gke dbname={dbname}"
    monkeypatch.chdir(tmp_path)
    store = open_store(dsn)
    try:
        assert isinstance(store, PostgresStore)
        assert not any(tmp_path.iterdir())  # no file named after the string
    finally:
        store.close()

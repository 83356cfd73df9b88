"""The service store on SQLite and on a real PostgreSQL server started by the tests.

PostgreSQL runs from the machine's server binaries on 127.0.0.1 (as the
``postgres`` user when the tests run as root, see tests/support/postgres.py).
Locally a machine without the binaries skips these; in CI (``CI`` set) that
is a failure, never a skip.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gke_inference.automation.databases import (
    PostgresStore,
    SQLiteStore,
    advisory_key,
    open_store,
    redact_url,
)
from gke_inference.automation.store import (
    INTERRUPTED,
    Operation,
    SQLStore,
    StoreUnavailableError,
    WorkloadBusyError,
    new_id,
)
from tests.support.postgres import PostgresServer, required_postgres


def postgres() -> PostgresServer:
    return required_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], SQLStore]]:
    """A factory of store instances over one fresh database (a 'replica' each)."""
    if request.param == "sqlite":
        target = str(tmp_path / "service.db")
    else:
        target = postgres().create_database()
    stores: list[SQLStore] = []

    def factory() -> SQLStore:
        store = open_store(target)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        store.close()


def _op(workload: str = "gemma", kind: str = "up", env: str = "dev") -> Operation:
    return Operation(new_id(), env, workload, kind, spec={"name": workload})


def test_operation_lifecycle_and_log(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    op = _op()
    store.submit(op, {"name": "gemma", "kind": "online"})
    assert store.get_operation(op.id).status == "queued"  # type: ignore[union-attr]
    assert store.active_operation("dev", "gemma") == op.id
    assert store.mark_running(op.id)
    assert not store.mark_running(op.id)  # only once
    for i in range(5):
        store.append_log(op.id, f"line {i}")
    assert store.finish(op.id, "succeeded", result={"outputs": {"url": "http://x"}})
    assert not store.finish(op.id, "failed", error="late")  # finished stays finished
    got = store.get_operation(op.id)
    assert got is not None
    assert got.status == "succeeded"
    assert got.log == [f"line {i}" for i in range(5)]
    assert got.to_json()["outputs"] == {"url": "http://x"}
    assert got.started_at and got.finished_at
    assert store.active_operation("dev", "gemma") is None
    assert store.get_operation("nope") is None


def test_workload_records(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    first = _op("a")
    store.submit(first, {"name": "a"})
    store.submit(_op("b"), {"name": "b"})
    store.submit(_op("a", env="prod"), {"name": "a"})
    assert [w.name for w in store.list_workloads("dev")] == ["a", "b"]
    record = store.get_workload("dev", "a")
    assert record is not None and record.status == "deploying"
    assert record.last_operation == first.id
    store.finish(first.id, "succeeded")
    store.set_workload("dev", "a", "deployed", {"url": "u"})
    record = store.get_workload("dev", "a")
    assert record is not None and (record.status, record.outputs) == ("deployed", {"url": "u"})
    # a new submission replaces the spec, keeps the outputs until it is deployed
    store.submit(_op("a"), {"name": "a", "concurrency": 32})
    record = store.get_workload("dev", "a")
    assert record is not None
    assert record.spec == {"name": "a", "concurrency": 32}
    assert record.outputs == {"url": "u"}
    store.delete_workload("dev", "b")
    assert store.get_workload("dev", "b") is None
    assert [w.name for w in store.list_workloads("prod")] == ["a"]


def test_one_active_operation_per_workload(make_store: Callable[[], SQLStore]) -> None:
    store = make_store()
    first = _op()
    store.submit(first, {"name": "gemma"})
    with pytest.raises(WorkloadBusyError) as busy:
        store.submit(_op(kind="destroy"))
    assert busy.value.operation == first.id
    with pytest.raises(WorkloadBusyError):
        store.submit(_op(kind="preview"))
    store.submit(_op("other"))  # another workload is independent
    store.submit(_op(env="prod"))  # so is another environment
    store.finish(first.id, "failed", error="x")
    store.submit(_op(kind="destroy"))  # free again


def test_concurrent_submissions_from_two_replicas(make_store: Callable[[], SQLStore]) -> None:
    """Two replicas on PostgreSQL; on SQLite (one process per file: a second store is
    refused) the threads share the one store."""
    first = make_store()
    try:
        replicas = [first, make_store()]
    except StoreUnavailableError:
        replicas = [first, first]
    barrier = threading.Barrier(8)
    accepted: list[str] = []
    rejected: list[str] = []

    def submit(i: int) -> None:
        op = _op()
        barrier.wait()
        try:
            replicas[i % 2].submit(op, {"name": "gemma"})
            accepted.append(op.id)
        except WorkloadBusyError:
            rejected.append(op.id)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 1
    assert len(rejected) == 7


def test_recover_marks_interrupted_operations_failed(make_store: Callable[[], SQLStore]) -> None:
    before = make_store()
    running, queued, done = _op("a"), _op("b"), _op("c")
    for op in (running, queued, done):
        before.submit(op, {"name": op.workload})
    before.mark_running(running.id)
    before.mark_running(done.id)
    before.finish(done.id, "succeeded")
    before.close()  # the replica stops (its PostgreSQL liveness lock goes with it)

    after = make_store()
    assert sorted(after.recover()) == sorted([running.id, queued.id])
    for op in (running, queued):
        got = after.get_operation(op.id)
        assert got is not None and got.status == "failed"
        # PostgreSQL also names the replica that stopped
        assert got.error is not None and got.error.startswith(INTERRUPTED)
        assert after.get_workload("dev", op.workload).status == "failed"  # type: ignore[union-attr]
    assert after.get_operation(done.id).status == "succeeded"  # type: ignore[union-attr]
    assert [w.name for w in after.list_workloads("dev")] == ["a", "b", "c"]
    assert after.recover() == []


def test_postgres_recover_spares_live_replicas(tmp_path: Path) -> None:
    url = postgres().create_database()
    alive = open_store(url)
    gone = open_store(url)
    starting = open_store(url)
    try:
        mine, theirs = _op("a"), _op("b")
        alive.submit(mine, {"name": "a"})
        alive.mark_running(mine.id)
        gone.submit(theirs, {"name": "b"})
        gone.mark_running(theirs.id)
        gone.close()
        assert starting.recover() == [theirs.id]
        assert starting.get_operation(mine.id).status == "running"  # type: ignore[union-attr]
        assert starting.get_operation(theirs.id).status == "failed"  # type: ignore[union-attr]
    finally:
        alive.close()
        starting.close()


def test_postgres_advisory_lock_across_store_instances() -> None:
    url = postgres().create_database()
    first = PostgresStore(url)
    second = PostgresStore(url)
    try:
        with first.workload_lock("dev", "gemma") as got_first:
            assert got_first
            with second.workload_lock("dev", "gemma") as got_second:
                assert not got_second  # held by the other replica
            with second.workload_lock("dev", "other") as other:
                assert other  # per workload
            with second.workload_lock("prod", "gemma") as other_env:
                assert other_env  # per environment
        with second.workload_lock("dev", "gemma") as after_release:
            assert after_release
    finally:
        first.close()
        second.close()


def test_sqlite_workload_lock_is_per_process(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.init()
    with store.workload_lock("dev", "w") as first:
        assert first
        with store.workload_lock("dev", "w") as second:
            assert not second
    with store.workload_lock("dev", "w") as again:
        assert again


def test_helpers() -> None:
    assert advisory_key("workload", "dev", "a") != advisory_key("workload", "dev", "b")
    assert -(2**63) <= advisory_key("x") < 2**63
    assert redact_url("postgresql://svc:hunter2@db:5432/ops") == "postgresql://svc:***@db:5432/ops"
    assert redact_url("/var/lib/x.db") == "/var/lib/x.db"

"""Throughput of the service's store: what one operation writes, on SQLite and PostgreSQL.

One "operation" is what the service stores for a preview: submit, mark running,
LOG_LINES log lines, a read of the operation, its end. N operations run from
CONCURRENCY threads (the service's worker pool and request threads), each on its
own workload. PostgreSQL is a throwaway server on 127.0.0.1 (tests/support/
postgres.py), so the figures are the store's own cost, not a network's.

    .venv/bin/python bench/store_throughput.py              # 200 operations, 16 threads
    .venv/bin/python bench/store_throughput.py --ops 400 --concurrency 32

Prints operations/s and store calls/s per backend. Not run by the tests.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gke_inference.automation.databases import open_store  # noqa: E402
from gke_inference.automation.store import Operation, SQLStore, new_id  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402

LOG_LINES = 19  # what a preview of the gemma example logs through the offline runner
CALLS_PER_OP = 4 + LOG_LINES


def one_operation(store: SQLStore, i: int) -> None:
    op = Operation(new_id(), "dev", f"w{i}", "preview", spec={"name": f"w{i}"})
    store.submit(op)
    store.mark_running(op.id)
    for n in range(LOG_LINES):
        store.append_log(op.id, f"line {n} of operation {op.id}")
    store.get_operation(op.id)
    store.finish(op.id, "succeeded", result={"changes": {}})


def run(store: SQLStore, ops: int, concurrency: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: one_operation(store, i), range(ops)))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "service.db")
        results["sqlite"] = run(store, args.ops, args.concurrency)
        store.close()
    server = start_postgres()
    try:
        store = open_store(server.create_database())
        results["postgres"] = run(store, args.ops, args.concurrency)
        store.close()
    finally:
        server.stop()
    print(f"{args.ops} operations ({CALLS_PER_OP} store calls each), {args.concurrency} threads")
    for backend, seconds in results.items():
        rate = args.ops / seconds
        print(f"  {backend:9} {rate:7.1f} operations/s  {rate * CALLS_PER_OP:8.0f} calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

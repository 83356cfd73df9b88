"""Soak and fault test of the HTTP service: replicas, a real database, faults injected.

Two runs, on 127.0.0.1 only, each with the offline runner (no cloud):

- **postgres**: two `gke-inference serve` replicas on one PostgreSQL database
  (a throwaway server, tests/support/postgres.py) take a bounded loop of
  concurrent up/preview/destroy requests across several workloads, while the
  script kills one replica with SIGKILL (and starts a new one in its place) and
  restarts PostgreSQL.
- **sqlite**: one replica on a SQLite file whose disk fills up mid-run (the
  process's file-size limit is lowered to the database's size, so every write
  fails with "database or disk is full", then raised again).

At the end of each run it checks that every accepted operation reached a final
state, no workload is left busy, the store agrees with the offline state of every
stack (a `deployed` workload has its stack, with the spec it was deployed with;
no record, no stack), no secret (API token, config passphrase) appears in any
log or response, and each replica's peak RSS stayed under --max-rss-mib. It
prints the figures: operations, faults injected, request latency p50/p99, peak
RSS.

    .venv/bin/python scripts/soak.py                  # the full soak (a few minutes)
    .venv/bin/python scripts/soak.py --short          # what CI runs (tests/test_soak.py)

Exit status 0 when every check passed, 1 when one failed (each failure printed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gke_inference.automation.settings import AutomationSettings  # noqa: E402
from tests.support.offline import deploy_platforms  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402

SPEC = yaml.safe_load((REPO / "workloads" / "examples" / "gemma-3-1b-l4.yaml").read_text())
LEASE_SECONDS = 15  # the replicas' lease: a killed replica's work is released within it
FINAL = ("succeeded", "failed")


@dataclass
class Replica:
    name: str
    port: int
    env: dict[str, str]
    db: str
    log: Path
    process: subprocess.Popen[bytes] | None = None
    peak_rss_kib: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            return subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "gke-inference"), "serve", "--runner", "offline",
                 "--host", "127.0.0.1", "--port", str(self.port), "--db", self.db,
                 "--workers", "4", "--log-level", "info"],
                cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def start(self) -> None:
        """Start it and wait for /healthz; a process that exits (its database still down)
        is started again, as a kubelet restarts a crashed container."""
        self.process = self._spawn()
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer /healthz: {self.log_tail()}")
            if self.process.poll() is not None:
                time.sleep(1)
                self.process = self._spawn()
            time.sleep(0.2)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def alive(self) -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        return False

    def sample_rss(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib = max(self.peak_rss_kib, int(line.split()[1]))

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.sample_rss()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.sample_rss()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Tally:
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # op -> (kind, workload)
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    transport_errors: int = 0
    faults: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)  # bodies, for the secrets check
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    replicas: list[Replica], headers: dict[str, str], tally: Tally, rng: random.Random, w: str
) -> None:
    kind = rng.choices(["up", "preview", "destroy"], weights=[5, 3, 2])[0]
    base = "/v1/environments/dev/workloads"
    for replica in rng.sample(replicas, len(replicas)):
        started = time.monotonic()
        try:
            if kind == "up":
                r = httpx.post(f"{replica.url}{base}", json={**SPEC, "name": w},
                               headers=headers, timeout=60)  # fmt: skip
            elif kind == "preview":
                r = httpx.post(f"{replica.url}{base}/{w}/preview", headers=headers, timeout=60)
            else:
                r = httpx.delete(f"{replica.url}{base}/{w}", headers=headers, timeout=60)
        except httpx.TransportError:
            with tally.lock:
                tally.transport_errors += 1
            continue  # a killed replica: the client tries the other one
        with tally.lock:
            tally.latencies.append(time.monotonic() - started)
            tally.statuses[r.status_code] = tally.statuses.get(r.status_code, 0) + 1
            tally.responses.append(r.text)
            if r.status_code == 202:
                tally.accepted[r.json()["operation"]] = (kind, w)
        return


def load(
    replicas: list[Replica],
    headers: dict[str, str],
    tally: Tally,
    *,
    requests: int,
    workloads: int,
    concurrency: int,
    faults: dict[int, Any],
    seed: int,
    think: float,
) -> None:
    """``requests`` requests from ``concurrency`` threads; ``faults[i]()`` runs when the
    i-th request is sent."""
    counter = iter(range(requests))
    counter_lock = threading.Lock()
    fault_lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(seed * 1000 + n)  # noqa: S311 - a reproducible load, not a key
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                return
            if i in faults:
                with fault_lock:  # one fault at a time, each to its end
                    try:
                        faults[i]()
                    except Exception as exc:  # noqa: BLE001 - a fault that went wrong fails the run
                        tally.faults.append(f"FAULT FAILED: {type(exc).__name__}: {exc}")
            request(replicas, headers, tally, rng, f"soak-{rng.randrange(workloads)}")
            time.sleep(rng.uniform(0, 2 * think))  # a client's pause between requests
            for r in replicas:
                r.sample_rss()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def settle(
    replicas: list[Replica], headers: dict[str, str], tally: Tally, timeout: float
) -> list[str]:
    """Wait for every accepted operation to be final; what is still not."""
    pending = set(tally.accepted)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for op in list(pending):
            for replica in replicas:
                try:
                    r = httpx.get(f"{replica.url}/v1/operations/{op}", headers=headers, timeout=10)
                except httpx.TransportError:
                    continue
                if r.status_code == 200 and r.json()["status"] in FINAL:
                    pending.discard(op)
                break
        time.sleep(0.5)
    return sorted(pending)


def check(
    replicas: list[Replica],
    headers: dict[str, str],
    tally: Tally,
    state_file: Path,
    secret_values: list[str],
    max_rss_mib: int,
    settle_seconds: float,
) -> list[str]:
    failures = []
    stuck = settle(replicas, headers, tally, settle_seconds)
    if stuck:
        failures.append(f"{len(stuck)} accepted operation(s) never finished: {stuck[:5]}")
    live = next((r for r in replicas if r.alive()), None)
    if live is None:
        return [*failures, "no replica answers at the end"]
    failures += [f for f in tally.faults if f.startswith("FAULT FAILED")]
    workloads = httpx.get(f"{live.url}/v1/environments/dev/workloads", headers=headers, timeout=30)
    records = {w["name"]: w for w in workloads.json()}
    for name in records:
        doc = httpx.get(f"{live.url}/v1/environments/dev/workloads/{name}", headers=headers,
                        timeout=30).json()  # fmt: skip
        if doc.get("activeOperation"):
            failures.append(f"workload {name} is still busy with {doc['activeOperation']}")
    state = json.loads(state_file.read_text()) if state_file.exists() else {"workloads": {}}
    stacks = {
        record["workload"]: record for record in state.get("workloads", {}).values()
        if record.get("environment") == "dev"
    }  # fmt: skip
    for name, record in records.items():
        if record["status"] == "deployed":
            if name not in stacks:
                failures.append(f"{name} is recorded deployed but has no stack")
            elif stacks[name].get("spec", {}).get("name") != name:
                failures.append(f"{name}'s stack holds another spec")
    for name in stacks:
        if name.startswith("soak-") and name not in records:
            failures.append(f"{name} has a stack but no record (a destroy erased a later up?)")
    texts = [r.log.read_text(errors="replace") for r in replicas]
    for op in list(tally.accepted)[:200]:
        r = httpx.get(f"{live.url}/v1/operations/{op}", headers=headers, timeout=30)
        texts.append(r.text)
    texts += tally.responses
    for value in secret_values:
        if any(value in text for text in texts):
            failures.append("a secret value appears in a log or a response")
    for r in replicas:
        if r.peak_rss_kib > max_rss_mib * 1024:
            failures.append(f"{r.name} peaked at {r.peak_rss_kib // 1024} MiB (> {max_rss_mib})")
    server_errors = sum(n for code, n in tally.statuses.items() if code >= 500 and code != 503)
    if server_errors:
        failures.append(f"{server_errors} response(s) were 5xx other than 503: {tally.statuses}")
    return failures


def report(name: str, tally: Tally, replicas: list[Replica], failures: list[str]) -> None:
    lat = sorted(tally.latencies) or [0.0]
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"[{name}] requests {sum(tally.statuses.values())} ({dict(sorted(tally.statuses.items()))}), "
          f"operations accepted {len(tally.accepted)}, transport errors {tally.transport_errors}")  # fmt: skip
    print(f"[{name}] faults: {', '.join(tally.faults) or 'none'}")
    print(f"[{name}] latency p50 {statistics.median(lat) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
          f"peak RSS {', '.join(f'{r.name} {r.peak_rss_kib // 1024} MiB' for r in replicas)}")  # fmt: skip
    for failure in failures:
        print(f"[{name}] FAILED: {failure}")
    print(f"[{name}] {'ok' if not failures else 'FAILED'}")


@contextlib.contextmanager
def environment(tmp: Path) -> Iterator[tuple[dict[str, str], Path, list[str]]]:
    token = secrets.token_hex(32)
    passphrase = f"soak-{secrets.token_hex(16)}"
    env = {
        **os.environ,
        "GKE_INFERENCE_API_TOKEN": token,
        "PULUMI_CONFIG_PASSPHRASE": passphrase,
        "XDG_STATE_HOME": str(tmp / "state"),
        "GKE_INFERENCE_REPLICA_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    settings = AutomationSettings.from_env(REPO, env)
    state_file = settings.state_dir / "offline-state.json"
    deploy_platforms(settings, state_file, "dev")
    yield env, state_file, [token, passphrase]


def run_postgres(args: argparse.Namespace, tmp: Path) -> list[str]:
    server: PostgresServer = start_postgres()
    replicas: list[Replica] = []
    try:
        with environment(tmp) as (env, state_file, secret_values):
            db = server.create_database()
            replicas = [
                Replica(f"replica-{i}", free_port(), env, db, tmp / f"replica-{i}.log")
                for i in range(2)
            ]
            for r in replicas:
                r.start()
            headers = {"Authorization": f"Bearer {env['GKE_INFERENCE_API_TOKEN']}"}
            tally = Tally()

            def kill_one() -> None:
                victim = replicas[0]
                victim.kill()
                tally.faults.append(f"SIGKILL {victim.name}")
                time.sleep(1)
                victim.start()  # a new process in its place (new replica id, same port)
                tally.faults.append(f"restarted {victim.name}")

            def restart_db() -> None:
                server.restart(down_seconds=2)
                tally.faults.append("PostgreSQL restarted (down 2 s)")

            n = args.requests
            load(replicas, headers, tally, requests=n, workloads=args.workloads,
                 concurrency=args.concurrency, faults={n // 3: kill_one, 2 * n // 3: restart_db},
                 seed=args.seed, think=args.think)  # fmt: skip
            failures = check(replicas, headers, tally, state_file, secret_values,
                             args.max_rss_mib, settle_seconds=LEASE_SECONDS * 4 + 60)  # fmt: skip
            report("postgres", tally, replicas, failures)
            return failures
    finally:
        for r in replicas:
            r.stop()
        server.stop()


def run_sqlite(args: argparse.Namespace, tmp: Path) -> list[str]:
    replica: Replica | None = None
    try:
        with environment(tmp) as (env, state_file, secret_values):
            db = tmp / "sqlite" / "service.db"
            replica = Replica("sqlite", free_port(), env, str(db), tmp / "sqlite.log")
            replica.start()
            headers = {"Authorization": f"Bearer {env['GKE_INFERENCE_API_TOKEN']}"}
            tally = Tally()
            assert replica.process is not None
            pid = replica.process.pid

            def fill_disk() -> None:
                used = sum(p.stat().st_size for p in db.parent.glob("service.db*"))
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (used, resource.RLIM_INFINITY))
                tally.faults.append(f"disk full at {used // 1024} KiB")
                time.sleep(3)
                resource.prlimit(
                    pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
                )
                tally.faults.append("disk space back after 3 s")

            n = args.requests // 2
            load([replica], headers, tally, requests=n, workloads=args.workloads,
                 concurrency=args.concurrency, faults={n // 2: fill_disk}, seed=args.seed, think=args.think)  # fmt: skip
            failures = check([replica], headers, tally, state_file, secret_values,
                             args.max_rss_mib, settle_seconds=90)  # fmt: skip
            report("sqlite", tally, [replica], failures)
            return failures
    finally:
        if replica is not None:
            replica.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI form: fewer requests")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--workloads", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-rss-mib", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds between requests")
    parser.add_argument("--only", choices=["postgres", "sqlite"])
    args = parser.parse_args(argv)
    if args.short:
        args.requests, args.workloads, args.concurrency = 80, 10, 6
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gke-inference-soak-") as tmp:
        if args.only in (None, "postgres"):
            failures += run_postgres(args, Path(tmp) / "pg")
        if args.only in (None, "sqlite"):
            failures += run_sqlite(args, Path(tmp) / "lite")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

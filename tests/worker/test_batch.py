"""Batch worker: resume after kill -9, failure threshold, atomic output, readiness wait."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_vllm import FakeVLLM, model_env
from pubsub_emulator import stop_process_group

from gke_inference_worker import files
from gke_inference_worker.batch import BatchWorker
from gke_inference_worker.config import BatchConfig

WORKER_BIN = str(Path(sys.executable).with_name("gke-inference-worker"))


def write_shard(directory: Path, n: int, index: int = 0, extra: list[str] | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": f"r{i}", "prompt": f"p{i}"}) for i in range(n)]
    (directory / f"input_shard_{index}.jsonl").write_text("\n".join(lines + (extra or [])) + "\n")


def batch_env(tmp_path: Path, model_url: str, **overrides: Any) -> dict[str, str]:
    batch = {
        "INPUT_DIR": str(tmp_path / "in"),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "JOB_COMPLETION_INDEX": "0",
        "MAX_ATTEMPTS": "2",
        "BACKOFF_INITIAL_S": "0.01",
        "BACKOFF_MAX_S": "0.05",
    }
    return model_env(model_url, **{**batch, **overrides})


def run_in_process(env: dict[str, str]) -> int:
    async def main() -> int:
        return await BatchWorker(BatchConfig.from_env(env)).run(asyncio.Event())

    return asyncio.run(main())


def output_records(tmp_path: Path, index: int = 0) -> list[dict[str, Any]]:
    path = tmp_path / "out" / f"output_shard_{index}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_after_kill_does_not_redo_finished_requests(tmp_path: Path, fake_vllm: FakeVLLM):
    write_shard(tmp_path / "in", 30)
    fake_vllm.delay_s = 0.15
    env = {**os.environ, **batch_env(tmp_path, fake_vllm.url, MAX_CONCURRENCY=2)}
    progress = tmp_path / "out" / ".output_shard_0.jsonl.progress"
    final = tmp_path / "out" / "output_shard_0.jsonl"

    proc = subprocess.Popen([WORKER_BIN, "batch"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (progress.exists() and progress.read_text().count("\n") >= 8):
            assert time.monotonic() < deadline, "batch worker made no progress"
            assert proc.poll() is None, "batch worker exited early"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        stop_process_group(proc)

    assert not final.exists(), "no output may appear under the final name before the end"
    finished_before = {r["id"] for r in files.read_jsonl(progress) if "output" in r}
    assert 8 <= len(finished_before) < 30
    fake_vllm.reset()

    rerun = subprocess.run(
        [WORKER_BIN, "batch"], env=env, capture_output=True, timeout=60, check=False
    )

    assert rerun.returncode == 0, rerun.stderr.decode()
    records = output_records(tmp_path)
    assert [r["id"] for r in records] == [f"r{i}" for i in range(30)]  # input order, once each
    assert all(r["output"] == f"echo:p{r['id'][1:]}" for r in records)
    second_run_calls = fake_vllm.call_counts()
    assert not finished_before & set(second_run_calls), "finished requests were redone"
    assert set(second_run_calls) == {f"r{i}" for i in range(30)} - finished_before
    assert max(second_run_calls.values()) == 1
    assert not progress.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["output_shard_0.jsonl"]


@pytest.mark.parametrize(("failing", "expected_exit"), [(1, 0), (2, 1)])
def test_exit_code_follows_failure_threshold(
    tmp_path: Path, fake_vllm: FakeVLLM, failing: int, expected_exit: int
):
    # 20 requests, MAX_FAILURE_FRACTION 0.05: one failure (5%) is allowed, two are not.
    write_shard(tmp_path / "in", 20)
    fake_vllm.fail_ids = {f"r{i}" for i in range(failing)}

    code = run_in_process(batch_env(tmp_path, fake_vllm.url, MAX_FAILURE_FRACTION=0.05))

    assert code == expected_exit
    records = {r["id"]: r for r in output_records(tmp_path)}
    assert len(records) == 20
    errors = {k for k, r in records.items() if "error" in r}
    assert errors == fake_vllm.fail_ids
    assert all("HTTP 500" in records[k]["error"] for k in errors)
    assert fake_vllm.call_counts()["r0"] == 2  # MAX_ATTEMPTS


def test_malformed_lines_count_as_failures_and_are_recorded(tmp_path: Path, fake_vllm: FakeVLLM):
    write_shard(tmp_path / "in", 3, extra=["{broken", json.dumps({"id": "x"}), ""])

    code = run_in_process(batch_env(tmp_path, fake_vllm.url, MAX_FAILURE_FRACTION=0.5))

    assert code == 0  # 2 of 5 failed, within 0.5
    records = output_records(tmp_path)
    assert [r["id"] for r in records] == ["r0", "r1", "r2", "line:4", "x"]
    assert "invalid JSON" in records[3]["error"]
    assert "exactly one of" in records[4]["error"]
    assert set(fake_vllm.call_counts()) == {"r0", "r1", "r2"}


def test_rerun_after_failures_retries_only_the_failed_requests(tmp_path: Path, fake_vllm: FakeVLLM):
    write_shard(tmp_path / "in", 10)
    fake_vllm.fail_ids = {"r3", "r7"}
    assert run_in_process(batch_env(tmp_path, fake_vllm.url)) == 1
    fake_vllm.reset()

    assert run_in_process(batch_env(tmp_path, fake_vllm.url)) == 0

    assert fake_vllm.call_counts() == Counter({"r3": 1, "r7": 1})
    assert all("output" in r for r in output_records(tmp_path))


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path: Path, monkeypatch):
    target = tmp_path / "output.jsonl"
    target.write_text("old\n")

    def explode(_src: Any, _dst: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "replace", explode)
    with pytest.raises(OSError, match="disk gone"):
        files.write_atomic(target, ["new"])

    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]  # the temporary file was removed


def test_journal_ignores_a_torn_last_record(tmp_path: Path):
    path = tmp_path / "journal"
    path.write_bytes(b'{"id": "a", "output": "x"}\n{"id": "b", "outp')
    journal = files.Journal(path)
    journal.append({"id": "c", "output": "y"})
    journal.close()

    assert [r["id"] for r in files.read_jsonl(path)] == ["a", "c"]


def test_wait_for_model_times_out_with_exit_3(tmp_path: Path, fake_vllm: FakeVLLM):
    write_shard(tmp_path / "in", 1)
    fake_vllm.healthy = False
    env = {**os.environ, **batch_env(tmp_path, fake_vllm.url)}

    result = subprocess.run(
        [WORKER_BIN, "batch", "--wait-for-model", "1.5"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 3
    assert "model server not ready in time" in result.stderr.decode()
    assert fake_vllm.call_counts() == Counter()


def test_wait_for_model_proceeds_once_healthy(tmp_path: Path, fake_vllm: FakeVLLM):
    write_shard(tmp_path / "in", 2)
    env = {**os.environ, **batch_env(tmp_path, fake_vllm.url, MODEL_READY_TIMEOUT_S=20)}

    result = subprocess.run(
        [WORKER_BIN, "batch"], env=env, capture_output=True, timeout=30, check=False
    )

    assert result.returncode == 0, result.stderr.decode()
    assert len(output_records(tmp_path)) == 2

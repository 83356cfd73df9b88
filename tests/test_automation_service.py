"""The HTTP service over the offline runner: every route, auth, errors, races, restarts."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gke_inference.automation.databases import open_store
from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.runner import PlatformStack
from gke_inference.automation.service import ServiceConfigError, create_app
from gke_inference.automation.store import INTERRUPTED, Operation, SQLStore, new_id
from gke_inference.automation.worker import Redactor
from tests.support.http import served_in_thread
from tests.support.offline import deploy_platforms, offline_settings
from tests.support.postgres import PostgresUnavailable, shared_postgres

REPO = Path(__file__).resolve().parents[1]
TOKEN = "t0ken-for-tests-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC: dict[str, Any] = yaml.safe_load(
    (REPO / "workloads/examples/gemma-3-1b-l4.yaml").read_text(encoding="utf-8")
)
NAME = SPEC["name"]
LLAMA: dict[str, Any] = yaml.safe_load(
    (REPO / "workloads/examples/llama-3-3-70b-h100.yaml").read_text(encoding="utf-8")
)


class Gate:
    """A delay hook: operations wait here while the gate is closed."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Semaphore(0)

    def close(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    def __call__(self, operation: str, stack: str) -> None:
        self.entered.release()
        assert self.open.wait(timeout=60), "gate never opened"


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def runner(tmp_path: Path, gate: Gate) -> OfflineRunner:
    # Workload stacks read their platform through a StackReference: deploy both first.
    deploy_platforms(offline_settings(tmp_path), tmp_path / "offline.json", "dev", "prod")
    return OfflineRunner(
        offline_settings(tmp_path), state_file=tmp_path / "offline.json", delay=gate
    )


@pytest.fixture
def client(runner: OfflineRunner, store: SQLStore) -> Iterator[TestClient]:
    with TestClient(create_app(runner, store, token=TOKEN)) as client:
        yield client


def wait(client: TestClient | httpx.Client, operation: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/operations/{operation}", headers=AUTH)
        assert response.status_code == 200, response.text
        doc: dict[str, Any] = response.json()
        if doc["status"] in ("succeeded", "failed"):
            return doc
        assert time.monotonic() < deadline, f"operation still {doc['status']}"
        time.sleep(0.05)


def wait_status(client: TestClient, operation: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while client.get(f"/v1/operations/{operation}", headers=AUTH).json()["status"] != status:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def deploy(client: TestClient | httpx.Client, spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    response = client.post("/v1/environments/dev/workloads", json=spec, headers=AUTH)
    assert response.status_code == 202, response.text
    return wait(client, response.json()["operation"])


# --------------------------------------------------------------------------- happy path


def test_create_get_list_preview_delete(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "runner": "offline"}
    envs = client.get("/v1/environments", headers=AUTH).json()
    assert [e["name"] for e in envs] == ["dev", "prod"]
    assert envs[0]["platformStack"] == "organization/gke-inference/dev"

    response = client.post("/v1/environments/dev/workloads", json=SPEC, headers=AUTH)
    assert response.status_code == 202
    operation = response.json()["operation"]
    assert response.headers["location"] == f"/v1/operations/{operation}"
    done = wait(client, operation)
    assert done["status"] == "succeeded", done
    assert done["kind"] == "up"
    assert done["outputs"]["computeClass"] == "gpu-l4-x1"
    assert done["outputs"]["url"].startswith("http://gemma-3-1b.")
    assert done["changes"]["create"] > 5
    assert done["policy"]["violations"] == [
        v for v in done["policy"]["violations"] if v["level"] == "advisory"
    ]
    assert done["log"][0].startswith("Updating (organization/gke-inference-workloads/dev-gemma")
    assert any(line.startswith("Resources:") for line in done["log"])

    listed = client.get("/v1/environments/dev/workloads", headers=AUTH).json()
    assert [(w["name"], w["status"]) for w in listed] == [(NAME, "deployed")]
    assert client.get("/v1/environments/prod/workloads", headers=AUTH).json() == []
    got = client.get(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH).json()
    assert got["spec"]["model"]["id"] == "google/gemma-3-1b-it"
    assert got["outputs"]["computeClass"] == "gpu-l4-x1"
    assert got["lastOperation"] == operation
    assert got["activeOperation"] is None

    # preview the submitted spec: nothing changes
    preview = client.post(f"/v1/environments/dev/workloads/{NAME}/preview", headers=AUTH)
    assert preview.status_code == 202
    previewed = wait(client, preview.json()["operation"])
    assert previewed["status"] == "succeeded"
    assert set(previewed["changes"]) == {"same"}
    # preview a change from the body: only the edited objects change, nothing is recorded
    bigger = {**SPEC, "scaling": {**SPEC["scaling"], "maxReplicas": 6}}
    change = client.post(
        f"/v1/environments/dev/workloads/{NAME}/preview", json=bigger, headers=AUTH
    )
    changed = wait(client, change.json()["operation"])
    assert changed["changes"].get("update", 0) >= 1, changed["changes"]
    got = client.get(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH).json()
    assert got["spec"]["scaling"]["maxReplicas"] == 4

    deleted = client.delete(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH)
    assert deleted.status_code == 202
    gone = wait(client, deleted.json()["operation"])
    assert gone["status"] == "succeeded"
    assert gone["changes"]["delete"] == done["changes"]["create"]
    assert client.get(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH).status_code == 404
    assert client.get("/v1/environments/dev/workloads", headers=AUTH).json() == []


def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    assert "/v1/environments/{env}/workloads" in paths
    assert "/v1/operations/{operation_id}" in paths
    assert "delete" in paths["/v1/environments/{env}/workloads/{name}"]
    assert "post" in paths["/v1/environments/{env}/workloads/{name}/preview"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_openapi_describes_the_real_shapes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas, paths = doc["components"]["schemas"], doc["paths"]

    def schema(operation: dict[str, Any], code: str) -> dict[str, Any]:
        found: dict[str, Any] = operation["responses"][code]["content"]["application/json"]
        return found["schema"]

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    create = paths["/v1/environments/{env}/workloads"]["post"]
    preview = paths["/v1/environments/{env}/workloads/{name}/preview"]["post"]
    for operation, required in ((create, True), (preview, False)):
        body = operation["requestBody"]
        assert body["content"]["application/json"]["schema"] == ref("WorkloadSpec")
        assert body["required"] is required
        assert schema(operation, "202") == ref("OperationAccepted")
        assert schema(operation, "409") == ref("Conflict")
        assert schema(operation, "422") == ref("Problems")
    # the spec by alias, as clients write it
    spec = schemas["WorkloadSpec"]["properties"]
    assert {"contextLength", "kvCacheDtype", "costOptimized"} <= set(spec)
    assert "context_length" not in spec
    assert set(schemas["ProblemDetail"]["properties"]) == {"loc", "path", "msg", "type"}
    workload = paths["/v1/environments/{env}/workloads/{name}"]["get"]
    assert schema(workload, "200") == ref("WorkloadDetailResponse")
    detail = schemas["WorkloadDetailResponse"]["properties"]
    assert {"lastOperation", "updatedAt", "activeOperation"} <= set(detail)
    assert detail["spec"]["allOf"] == [ref("WorkloadSpec")]
    operation = schema(paths["/v1/operations/{operation_id}"]["get"], "200")
    assert operation == ref("OperationResponse")
    assert {"createdAt", "violations", "policy"} <= set(schemas["OperationResponse"]["properties"])
    assert schema(paths["/v1/environments"]["get"], "200")["items"] == ref("EnvironmentResponse")
    assert schema(paths["/healthz"]["get"], "200") == ref("HealthResponse")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong-token", "wrong-scheme"],
)
def test_401_without_the_token(client: TestClient, headers: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/v1/environments"),
        ("GET", "/v1/environments/dev/workloads"),
        ("POST", "/v1/environments/dev/workloads"),
        ("GET", f"/v1/environments/dev/workloads/{NAME}"),
        ("DELETE", f"/v1/environments/dev/workloads/{NAME}"),
        ("POST", f"/v1/environments/dev/workloads/{NAME}/preview"),
        ("GET", "/v1/operations/x"),
    ]:
        response = client.request(method, path, headers=headers, content=b"{not json")
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text


def test_refuses_to_start_without_a_token(
    runner: OfflineRunner, store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GKE_INFERENCE_API_TOKEN", raising=False)
    with pytest.raises(ServiceConfigError, match="GKE_INFERENCE_API_TOKEN"):
        create_app(runner, store)
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", TOKEN)
    assert isinstance(create_app(runner, store), FastAPI)


def test_404s(client: TestClient) -> None:
    assert client.get("/v1/environments/staging/workloads", headers=AUTH).status_code == 404
    response = client.post("/v1/environments/staging/workloads", json=SPEC, headers=AUTH)
    assert response.status_code == 404
    assert "known: dev, prod" in response.json()["detail"]
    for method, path in [
        ("GET", "/v1/environments/dev/workloads/nope"),
        ("DELETE", "/v1/environments/dev/workloads/nope"),
        ("POST", "/v1/environments/dev/workloads/nope/preview"),
        ("GET", "/v1/operations/nope"),
    ]:
        assert client.request(method, path, headers=AUTH).status_code == 404, path


def test_422_lists_field_errors(client: TestClient) -> None:
    bad = {
        **SPEC,
        "name": "Not_A_DNS_Label",
        "accelerator": "tpu-v99",
        "scaling": {"minReplicas": 3, "maxReplicas": 2},
        "surprise": True,
    }
    response = client.post("/v1/environments/dev/workloads", json=bad, headers=AUTH)
    assert response.status_code == 422
    paths = {item["path"] for item in response.json()["detail"]}
    assert {"name", "accelerator", "surprise"} <= paths, paths
    assert all(item["msg"] for item in response.json()["detail"])

    for body in (b"{broken", b"[1, 2]", b""):
        response = client.post(
            "/v1/environments/dev/workloads",
            content=body,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert response.status_code == 422, body

    # a spec that cannot fit its accelerator is a 422 too (sizing runs before queueing)
    architecture = {
        "parametersBillions": 2000,
        "layers": 128,
        "attentionHeads": 128,
        "kvHeads": 8,
        "headDim": 128,
        "maxContext": 131072,
    }
    huge = {**SPEC, "model": {"id": "acme/huge", "architecture": architecture}}
    huge_response = client.post("/v1/environments/dev/workloads", json=huge, headers=AUTH)
    assert huge_response.status_code == 422, huge_response.text
    assert huge_response.json()["detail"][0]["path"] == "accelerator"
    assert "does not fit" not in huge_response.json()["detail"][0]["path"]

    deploy(client)
    other = {**SPEC, "name": "other-name"}
    mismatch = client.post(
        f"/v1/environments/dev/workloads/{NAME}/preview", json=other, headers=AUTH
    )
    assert mismatch.status_code == 422
    assert mismatch.json()["detail"][0]["path"] == "name"


# A batch Job cannot span nodes (online replicas can: a LeaderWorkerSet group).
BATCH = {"input": "gs://acme-in/x", "output": "gs://acme-out/y", "shards": 4}


def operations_recorded(tmp_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(tmp_path / "service.db")) as conn:
        count: int = conn.execute("SELECT count(*) FROM operations").fetchone()[0]
    return count


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (LLAMA, "'gpu-h100-80gb-x4', which this environment does not enable"),
        (
            {**LLAMA, "kind": "batch", "accelerator": "l4", "concurrency": 64, "batch": BATCH},
            "pipeline parallelism",
        ),
    ],
    ids=["class-not-enabled", "batch-replica-spans-two-nodes"],
)
def test_422_for_a_spec_the_environment_cannot_deploy(
    client: TestClient, tmp_path: Path, spec: dict[str, Any], says: str
) -> None:
    response = client.post("/v1/environments/dev/workloads", json=spec, headers=AUTH)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert {k: v for k, v in problem.items() if k != "msg"} == {
        "loc": ["body", "accelerator"],
        "path": "accelerator",
        "type": "spec",
    }
    assert says in problem["msg"]
    assert operations_recorded(tmp_path) == 0  # rejected before anything was queued
    assert client.get("/v1/environments/dev/workloads", headers=AUTH).json() == []


def test_preview_of_an_undeployable_change_is_a_422(client: TestClient, tmp_path: Path) -> None:
    deploy(client)
    on_h100 = {**SPEC, "accelerator": "h100-80gb"}  # dev enables no H100 class
    response = client.post(
        f"/v1/environments/dev/workloads/{NAME}/preview", json=on_h100, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert "'gpu-h100-80gb-x1', which this environment" in response.json()["detail"][0]["msg"]
    assert operations_recorded(tmp_path) == 1  # only the deployment


def test_policy_violation_fails_the_operation(client: TestClient) -> None:
    latest = {**SPEC, "server": {"type": "vllm-gpu", "image": "us-docker.pkg.dev/x/y/vllm:latest"}}
    done = deploy(client, latest)
    assert done["status"] == "failed"
    assert "policy pack rejected" in done["error"]
    assert {v["policy"] for v in done["violations"]} == {"k8s-image-tag-pinned"}
    assert all(v["level"] == "mandatory" for v in done["violations"])
    assert any("uses :latest" in v["message"] for v in done["violations"])
    assert any("[mandatory]" in line for line in done["log"])
    record = client.get(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH).json()
    assert record["status"] == "failed"
    assert record["outputs"] == {}  # nothing was deployed


# --------------------------------------------------------------------------- concurrency


@pytest.fixture
def live_server(runner: OfflineRunner, store: SQLStore) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1 (its own thread)."""
    with served_in_thread(create_app(runner, store, token=TOKEN)) as url:
        yield url


def test_409_for_concurrent_mutations_over_http(live_server: str, gate: Gate) -> None:
    gate.close()  # operations block inside the runner until released
    barrier = threading.Barrier(2)
    responses: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            barrier.wait()
            responses.append(http.post("/v1/environments/dev/workloads", json=SPEC, headers=AUTH))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in responses)
    assert codes == [202, 409], [r.text for r in responses]
    accepted = next(r for r in responses if r.status_code == 202).json()["operation"]
    conflict = next(r for r in responses if r.status_code == 409).json()["detail"]
    assert conflict["operation"] == accepted

    with httpx.Client(base_url=live_server, timeout=30) as http:
        assert gate.entered.acquire(timeout=30)  # the accepted one is running now
        running = http.get(f"/v1/operations/{accepted}", headers=AUTH).json()
        assert running["status"] == "running"
        # every other mutation of the workload is refused while it runs
        assert (
            http.delete(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH).status_code == 409
        )
        preview = http.post(f"/v1/environments/dev/workloads/{NAME}/preview", headers=AUTH)
        assert preview.status_code == 409
        # another workload is not blocked
        other = http.post(
            "/v1/environments/dev/workloads", json={**SPEC, "name": "gemma-b"}, headers=AUTH
        )
        assert other.status_code == 202
        gate.release()
        assert wait(http, accepted)["status"] == "succeeded"
        assert wait(http, other.json()["operation"])["status"] == "succeeded"
        again = http.post("/v1/environments/dev/workloads", json=SPEC, headers=AUTH)
        assert again.status_code == 202
        assert wait(http, again.json()["operation"])["status"] == "succeeded"


# --------------------------------------------------------------------------- restarts


def test_restart_marks_interrupted_operations_failed(
    tmp_path: Path, runner: OfflineRunner, gate: Gate
) -> None:
    db = tmp_path / "service.db"
    first_store = open_store(db)
    first = TestClient(create_app(runner, first_store, token=TOKEN))
    first.__enter__()
    deploy(first)  # a deployed workload survives the restart
    gate.close()
    response = first.post(
        "/v1/environments/dev/workloads", json={**SPEC, "name": "gemma-b"}, headers=AUTH
    )
    interrupted = response.json()["operation"]
    assert gate.entered.acquire(timeout=30)
    wait_status(first, interrupted, "running")
    # a queued operation that no worker took before the stop
    queued = Operation(new_id(), "dev", "gemma-c", "up", spec={**SPEC, "name": "gemma-c"})
    first_store.submit(queued, queued.spec)
    # the process dies here: no shutdown, the operations stay running/queued in the
    # database, and the kernel closes its files, which releases the file's lock
    first_store._process_lock.close()  # type: ignore[attr-defined]

    second_store = open_store(db)
    # a new process: a new runner over the same offline state
    second_runner = OfflineRunner(runner.settings, state_file=runner.state_file)
    with TestClient(create_app(second_runner, second_store, token=TOKEN)) as second:
        for operation in (interrupted, queued.id):
            doc = second.get(f"/v1/operations/{operation}", headers=AUTH).json()
            assert doc["status"] == "failed", doc
            assert doc["error"] == INTERRUPTED
        listed = {
            w["name"]: w["status"]
            for w in second.get("/v1/environments/dev/workloads", headers=AUTH).json()
        }
        assert listed == {NAME: "deployed", "gemma-b": "failed", "gemma-c": "failed"}
        # the workload is free again after recovery
        retry = second.post(
            "/v1/environments/dev/workloads", json={**SPEC, "name": "gemma-b"}, headers=AUTH
        )
        assert retry.status_code == 202
        assert wait(second, retry.json()["operation"])["status"] == "succeeded"
        # the old worker finishing late does not overwrite the recorded failure
        gate.release()
        first.__exit__(None, None, None)
        first_store_worker = first.app.state.service.worker  # type: ignore[attr-defined]
        first_store_worker.executor.shutdown(wait=True)
        old = second.get(f"/v1/operations/{interrupted}", headers=AUTH).json()
        assert old["status"] == "failed"
        assert old["error"] == INTERRUPTED
    first_store.close()
    second_store.close()


def test_service_on_postgres(tmp_path: Path, runner: OfflineRunner) -> None:
    try:
        url = shared_postgres().create_database()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
    store = open_store(url)
    try:
        with TestClient(create_app(runner, store, token=TOKEN)) as client:
            assert deploy(client)["status"] == "succeeded"
            listed = client.get("/v1/environments/dev/workloads", headers=AUTH).json()
            assert [w["status"] for w in listed] == ["deployed"]
            deleted = client.delete(f"/v1/environments/dev/workloads/{NAME}", headers=AUTH)
            assert wait(client, deleted.json()["operation"])["status"] == "succeeded"
    finally:
        store.close()


# --------------------------------------------------------------------------- secrets


def test_secrets_stay_out_of_logs_and_responses(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    done = deploy(client)
    text = str(done)
    assert TOKEN not in text
    assert "kubeconfig" not in text  # the platform's secret output never reaches a workload
    assert TOKEN not in caplog.text
    redact = Redactor([TOKEN, "pass-phrase-123"])
    assert redact(f"Authorization: Bearer {TOKEN} pass-phrase-123") == (
        "Authorization: Bearer [secret] [secret]"
    )


def test_runner_platform_outputs_mask_the_kubeconfig(runner: OfflineRunner) -> None:
    lines: list[str] = []
    result = runner.run("up", PlatformStack("dev"), lines.append)
    assert result.outputs["kubeconfig"] == "[secret]"
    assert runner.outputs(PlatformStack("dev"))["kubeconfig"] == "[secret]"
    assert not any("apiVersion: v1" in line and "clusters" in line for line in lines)
    assert any("kubeconfig" in line and "[secret]" in line for line in lines)

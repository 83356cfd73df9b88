"""Hostile input to the HTTP service (issue 15): nesting, non-finite and coerced numbers,
oversized bodies, and credentials that must never be shown (database URLs, tokens)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from fastapi.testclient import TestClient

from gke_inference.automation.databases import redact_error, redact_url
from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.service import ServiceConfigError, create_app
from gke_inference.automation.settings import (
    DEFAULT_MAX_BODY_BYTES,
    MAX_BODY_ENV,
    MAX_JSON_DEPTH,
)
from gke_inference.automation.store import SQLStore
from gke_inference.cli import main
from tests.support.http import served_in_thread
from tests.support.offline import deploy_platforms, offline_settings
from tests.support.postgres import PostgresUnavailable, shared_postgres

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hostile-tests-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}
SPEC: dict[str, Any] = yaml.safe_load(
    (REPO / "workloads/examples/gemma-3-1b-l4.yaml").read_text(encoding="utf-8")
)
NAME = SPEC["name"]
CREATE = "/v1/environments/dev/workloads"
MiB = 1 << 20


@pytest.fixture
def runner(tmp_path: Path) -> OfflineRunner:
    deploy_platforms(offline_settings(tmp_path), tmp_path / "offline.json", "dev")
    return OfflineRunner(offline_settings(tmp_path), state_file=tmp_path / "offline.json")


@pytest.fixture
def client(runner: OfflineRunner, store: SQLStore) -> Iterator[TestClient]:
    app = create_app(runner, store, token=TOKEN)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def post(client: TestClient, body: bytes, path: str = CREATE) -> httpx.Response:
    response: httpx.Response = client.post(path, content=body, headers=JSON_AUTH)
    return response


def wait(client: TestClient, operation: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        doc: dict[str, Any] = client.get(f"/v1/operations/{operation}", headers=AUTH).json()
        if doc["status"] in ("succeeded", "failed"):
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.05)


def one_problem(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert isinstance(problem, dict)
    return problem


def no_operations(client: TestClient) -> None:
    assert client.get("/v1/environments/dev/workloads", headers=AUTH).json() == []


# --------------------------------------------------------------------------- 1. nesting


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        # one level too many inside an otherwise valid spec
        json.dumps({**SPEC, "server": {"extraArgs": [["x"]]}})
        .encode()
        .replace(b'[["x"]]', b"[" * (MAX_JSON_DEPTH - 1) + b"1" + b"]" * (MAX_JSON_DEPTH - 1)),
        # unbalanced: the depth is refused before the parser recurses
        b"[" * 100_000,
    ],
    ids=["arrays-100000", "objects-20000", "spec-65-levels", "unterminated-100000"],
)
def test_deep_nesting_is_one_422(client: TestClient, body: bytes) -> None:
    problem = one_problem(post(client, body))
    assert problem["path"] == "(body)"
    assert problem["loc"] == ["body"]
    assert f"nested more than {MAX_JSON_DEPTH} levels" in problem["msg"]
    assert f"at most {MAX_JSON_DEPTH}" in problem["msg"]
    no_operations(client)


def test_nesting_up_to_the_limit_and_brackets_in_strings_are_fine(client: TestClient) -> None:
    # 64 levels: the body is decoded, the spec model judges it (an unknown key)
    deep = b"[" * (MAX_JSON_DEPTH - 1) + b"1" + b"]" * (MAX_JSON_DEPTH - 1)
    body = json.dumps({**SPEC, "surprise": None}).encode().replace(b"null", deep)
    problem = one_problem(post(client, body))
    assert problem["path"] == "surprise"
    # brackets inside strings are not nesting
    bracketed = {**SPEC, "name": "[" * 1000 + '{"' + "]" * 10}
    problem = one_problem(post(client, json.dumps(bracketed).encode()))
    assert problem["path"] == "name"


# --------------------------------------------------------------------------- 2. numbers


@pytest.mark.parametrize("literal", ["Infinity", "-Infinity", "NaN", "1e999", "-1e999"])
def test_non_finite_numbers_are_a_422_naming_the_path(client: TestClient, literal: str) -> None:
    spec = {**SPEC, "scaling": {**SPEC["scaling"], "target": 12345}}
    body = json.dumps(spec).encode().replace(b"12345", literal.encode())
    problem = one_problem(post(client, body))
    assert problem["path"] == "scaling.target"
    assert problem["loc"] == ["body", "scaling", "target"]
    assert "finite number" in problem["msg"] and literal in problem["msg"]
    no_operations(client)


def test_every_non_finite_number_is_listed(client: TestClient) -> None:
    body = b'{"name": "x", "scaling": {"target": NaN}, "server": {"extraArgs": [1, Infinity]}}'
    response = post(client, body)
    assert response.status_code == 422, response.text
    paths = [p["path"] for p in response.json()["detail"]]
    assert paths == ["scaling.target", "server.extraArgs[1]"]


@pytest.mark.parametrize(
    ("change", "path", "accepted"),
    [
        ({"concurrency": True}, "concurrency", "integer"),
        ({"concurrency": "16"}, "concurrency", "integer"),
        ({"contextLength": 8192.0}, "contextLength", "integer"),
        ({"scaling": {"minReplicas": True}}, "scaling.minReplicas", "integer"),
        ({"scaling": {"target": "5"}}, "scaling.target", "number"),
        ({"scaling": {"target": False}}, "scaling.target", "number"),
        ({"costOptimized": 1}, "costOptimized", "boolean"),
        ({"costOptimized": "true"}, "costOptimized", "boolean"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_no_coercion_of_request_types(
    client: TestClient, change: dict[str, Any], path: str, accepted: str
) -> None:
    spec = {**SPEC, **change}
    if "scaling" in change:
        spec["scaling"] = {**SPEC["scaling"], **change["scaling"]}
    problem = one_problem(post(client, json.dumps(spec).encode()))
    assert problem["path"] == path
    assert problem["type"] == "spec"
    assert f"valid {accepted}" in problem["msg"]
    assert "(got " in problem["msg"]  # the value given
    no_operations(client)


def test_an_integer_for_a_number_is_accepted(client: TestClient) -> None:
    spec = {**SPEC, "scaling": {**SPEC["scaling"], "target": 5}}
    response = client.post(CREATE, json=spec, headers=AUTH)
    assert response.status_code == 202, response.text
    assert wait(client, response.json()["operation"])["status"] == "succeeded"


# --------------------------------------------------------------------------- 3. body size


def padded(spec: dict[str, Any], size: int) -> bytes:
    """``spec`` as JSON padded with spaces to exactly ``size`` bytes."""
    body = json.dumps(spec).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_default_body_limit_is_one_mib() -> None:
    assert MiB == DEFAULT_MAX_BODY_BYTES


def test_body_just_over_the_limit_is_a_413(client: TestClient) -> None:
    response = post(client, padded(SPEC, MiB + 1))
    assert response.status_code == 413, response.text
    assert response.json() == {
        "detail": f"the request body is larger than {MiB} bytes, the most this service "
        f"accepts ({MAX_BODY_ENV})"
    }
    no_operations(client)
    # exactly the limit is read and accepted
    accepted = post(client, padded(SPEC, MiB))
    assert accepted.status_code == 202, accepted.text
    assert wait(client, accepted.json()["operation"])["status"] == "succeeded"


def test_body_limit_is_a_setting(
    runner: OfflineRunner, store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = padded(SPEC, 4096)
    monkeypatch.setenv(MAX_BODY_ENV, "4095")
    with TestClient(create_app(runner, store, token=TOKEN)) as client:
        response = post(client, body)
        assert response.status_code == 413
        assert "larger than 4095 bytes" in response.json()["detail"]
    monkeypatch.setenv(MAX_BODY_ENV, "4096")
    with TestClient(create_app(runner, store, token=TOKEN)) as client:
        assert post(client, body).status_code == 202
    with TestClient(create_app(runner, store, token=TOKEN, max_body_bytes=100)) as client:
        assert post(client, body).status_code == 413


@pytest.mark.parametrize("value", ["0", "-1", "1MB", "", " ", "1.5"])
def test_a_bad_body_limit_refuses_to_start(
    runner: OfflineRunner, store: SQLStore, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(MAX_BODY_ENV, value)
    if value == "":  # unset in effect: the default
        create_app(runner, store, token=TOKEN)
        return
    with pytest.raises(ServiceConfigError) as refused:
        create_app(runner, store, token=TOKEN)
    assert str(refused.value) == (
        f"{MAX_BODY_ENV} must be a positive number of bytes (got {value!r}); "
        f"default {DEFAULT_MAX_BODY_BYTES}"
    )


def test_the_limit_is_enforced_while_reading_a_lying_content_length(
    runner: OfflineRunner, store: SQLStore
) -> None:
    """The ASGI app itself: a Content-Length under the limit, then far more bytes."""
    import asyncio

    app = create_app(runner, store, token=TOKEN)
    chunk = b" " * 65536
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"authorization", f"Bearer {TOKEN}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", b"10"),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CREATE,
        "raw_path": CREATE.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
        "app": app,
    }

    async def request() -> None:
        await app(scope, receive, send)  # type: ignore[arg-type]

    asyncio.run(request())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert f"larger than {MiB} bytes" in json.loads(body)["detail"]
    assert pulled == MiB // len(chunk) + 1  # it stopped reading at the limit


@pytest.fixture
def live_server(runner: OfflineRunner, store: SQLStore) -> Iterator[str]:
    """The app on a real uvicorn server on 127.0.0.1 (its own thread)."""
    with served_in_thread(create_app(runner, store, token=TOKEN)) as url:
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def chunks(total: int, size: int = 65536) -> Iterator[bytes]:
    """``total`` bytes of JSON-ish filler, streamed: no Content-Length (chunked)."""
    yield b'{"surprise": ['
    sent = 14
    piece = b"1.5," * (size // 4)
    while sent + len(piece) < total - 4:
        yield piece
        sent += len(piece)
    yield b"1.5]}"


def test_chunked_body_over_the_limit_is_a_413(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as http:
        response = http.post(CREATE, content=chunks(2 * MiB), headers=JSON_AUTH)
        assert response.request.headers.get("transfer-encoding") == "chunked"
        assert response.status_code == 413, response.text
        assert f"larger than {MiB} bytes" in response.json()["detail"]
        # the connection serves the next request
        assert http.get("/healthz").status_code == 200


def test_a_declared_oversized_body_is_refused_before_it_is_sent(live_server: str) -> None:
    port = int(live_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {CREATE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {64 * MiB}\r\n\r\n".encode()
        )
        answer = sock.recv(65536).decode()  # no byte of the body was sent
    assert answer.startswith("HTTP/1.1 413 "), answer


@contextlib.contextmanager
def served(tmp_path: Path, *extra: str, **env: str) -> Iterator[tuple[str, int, Path]]:
    """``gke-inference serve --runner offline`` in its own process: (url, pid, log file)."""
    port = free_port()
    environ = {
        **os.environ,
        "GKE_INFERENCE_API_TOKEN": TOKEN,
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "gke_inference", "serve", "--runner", "offline"]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, "--port", str(port), *extra],
            cwd=REPO,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=10) as http:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/healthz").status_code == 200:
                        break
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url, server.pid, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def test_parallel_huge_bodies_keep_memory_bounded(tmp_path: Path) -> None:
    """Four parallel 60 MB bodies (chunked) against the real service process."""
    size = 60 * 1000 * 1000
    with served(tmp_path) as (url, pid, _):
        before = memory_kib(pid)
        codes: list[int | str] = []

        def upload() -> None:
            with httpx.Client(base_url=url, timeout=120) as http:
                try:
                    response = http.post(CREATE, content=chunks(size), headers=JSON_AUTH)
                    codes.append(response.status_code)
                except httpx.TransportError as exc:  # the server may stop reading first
                    codes.append(type(exc).__name__)

        threads = [threading.Thread(target=upload) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = memory_kib(pid)
    growth_mib = (after["VmHWM"] - before["VmRSS"]) / 1024
    print(f"peak RSS growth: {growth_mib:.1f} MiB (before {before}, after {after}, {codes})")
    assert codes == [413] * 4, codes
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB"


# --------------------------------------------------------------------------- 4. credentials


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("x" * 31, "is 31 characters long; at least 32 are required"),
        ("short", "is 5 characters long; at least 32 are required"),
        (" " * 40, "is only whitespace"),
        ("\t\n " * 12, "is only whitespace"),
        (TOKEN + "\n", "contains whitespace, control or non-ASCII"),
        (TOKEN[:16] + " " + TOKEN[16:], "contains whitespace, control or non-ASCII"),
        (TOKEN + "\x1b", "contains whitespace, control or non-ASCII"),
        (TOKEN + "é", "contains whitespace, control or non-ASCII"),
    ],
    ids=[
        "31-chars",
        "5-chars",
        "spaces",
        "mixed-whitespace",
        "newline",
        "inner-space",
        "esc",
        "non-ascii",
    ],
)
def test_weak_tokens_refuse_to_start(
    runner: OfflineRunner, store: SQLStore, monkeypatch: pytest.MonkeyPatch, token: str, says: str
) -> None:
    with pytest.raises(ServiceConfigError) as refused:
        create_app(runner, store, token=token)
    message = str(refused.value)
    assert message.startswith("GKE_INFERENCE_API_TOKEN ") and says in message
    assert "\n" not in message
    if token.strip():
        assert token.strip() not in message  # the token itself is never shown
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", token)
    with pytest.raises(ServiceConfigError, match=says):
        create_app(runner, store)
    create_app(runner, store, token="y" * 32)  # 32 characters are enough


def test_serve_with_a_weak_token_exits_2_with_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the service started with a weak token")

    # a regression fails instead of serving
    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(uvicorn.Server, "run", started)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    weak = "secret-but-short-token"
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", weak)
    assert main(["serve", "--runner", "offline"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: GKE_INFERENCE_API_TOKEN is {len(weak)} characters long; at least 32 are "
        "required (generate one with `openssl rand -hex 32`)\n"
    )
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", " " * 64)
    assert main(["serve", "--runner", "offline"]) == 2
    assert "is only whitespace" in capsys.readouterr().err


SECRET = "s3cr3t-Pass"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://svc:s3cr3t-Pass@db:5432/ops", "postgresql://svc:***@db:5432/ops"),
        ("postgres://svc:s3cr3t-Pass@db/ops", "postgres://svc:***@db/ops"),
        ("postgresql://u@h/db?password=s3cr3t-Pass", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=s3cr3t-Pass&application_name=x",
            "postgresql://u@h/db?sslmode=require&password=***&application_name=x",
        ),
        ("postgresql://u@h/db?%70assword=s3cr3t-Pass", "postgresql://u@h/db?%70assword=***"),
        ("postgresql://u@h/db?sslpassword=s3cr3t-Pass", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql://h?password=s3cr3t-Pass", "postgresql://h?password=***"),
        (
            "postgresql://u:s3cr3t-Pass@h1:5432,h2:5433/db?password=s3cr3t-Pass",
            "postgresql://u:***@h1:5432,h2:5433/db?password=***",
        ),
        # an unencoded '@' or '?' in the password is still hidden
        ("postgresql://u:s3cr3t@Pass@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:s3cr3t?Pass@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db?password=s3cr3t@Pass", "postgresql://u@h/db?password=***"),
        # keyword/value connection strings
        ("host=db user=svc password=s3cr3t-Pass", "host=db user=svc password=***"),
        ("host=db password = 's3cr3t Pass' dbname=ops", "host=db password=*** dbname=ops"),
        (r"password='s3cr3t\'Pass' host=db", "password=*** host=db"),
        ("host=db sslpassword=s3cr3t-Pass", "host=db sslpassword=***"),
        ("host=db password='s3cr3t-Pass", "host=db password=***"),
        # nothing to hide
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("/var/lib/gke-inference/service.db", "/var/lib/gke-inference/service.db"),
    ],
)
def test_redact_url_hides_every_libpq_credential_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cr3t" not in redact_url(url)
    assert redact_url(redact_url(url)) == shown  # idempotent


def test_redact_error_hides_what_the_driver_echoes() -> None:
    import psycopg

    for url in (
        "postgresql://u@127.0.0.1:1/db?password=s3cr3t-Pass%zz",
        "host=127.0.0.1 port=1 password=s3cr3t-Pass bogus",
        "postgresql://u:s3cr3t@Pass@127.0.0.1:1/db",
    ):
        with pytest.raises(psycopg.Error) as failed:
            psycopg.connect(url, connect_timeout=2)
        message = redact_error(str(failed.value), url)
        assert "s3cr3t" not in message and "Pass" not in message, message
    assert redact_error("user x failed", "postgresql://x:pw@h/db") == "user x failed"
    # a message quoting the URL itself
    assert redact_error("cannot open postgresql://u:pw@h/db?password=pw2", "/x.db") == (
        "cannot open postgresql://u:***@h/db?password=***"
    )


def postgres_url() -> str:
    try:
        return shared_postgres().create_database()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


def test_startup_line_hides_a_password_parameter(tmp_path: Path) -> None:
    url = postgres_url() + f"?password={SECRET}&application_name=gke-inference"
    with served(tmp_path, "--db", url) as (_, _, log):
        text = log.read_text()
    assert "database postgresql://gke@127.0.0.1:" in text
    assert "?password=***&application_name=gke-inference" in text
    assert SECRET not in text


def test_database_error_at_startup_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", TOKEN)
    url = f"postgresql://u@127.0.0.1:1/db?password={SECRET}%zz"
    assert main(["serve", "--runner", "offline", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "cannot open the database postgresql://u@127.0.0.1:1/db?password=***" in err
    assert SECRET not in err


def test_access_log_never_shows_query_strings_of_authenticated_routes(tmp_path: Path) -> None:
    with served(tmp_path) as (url, _, log), httpx.Client(base_url=url, timeout=30) as http:
        assert http.get(f"/v1/environments?access_token={SECRET}", headers=AUTH).status_code == 200
        assert http.get(f"/v1/operations/x?token={SECRET}&page=2").status_code == 401
        assert http.get(f"/healthz?token={SECRET}&verbose=1").status_code == 200
        assert http.get(f"/healthz?api_key={SECRET}").status_code == 200
        deadline = time.monotonic() + 10
        while log.read_text().count('"GET ') < 4:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
    assert SECRET not in text
    assert '"GET /v1/environments?[redacted] HTTP/1.1" 200' in text
    assert '"GET /v1/operations/x?[redacted] HTTP/1.1" 401' in text
    assert '"GET /healthz?token=[secret]&verbose=1 HTTP/1.1" 200' in text
    assert '"GET /healthz?api_key=[secret] HTTP/1.1" 200' in text


def test_access_log_filter_in_process(live_server: str) -> None:
    """The filter sits on the ``uvicorn.access`` logger itself, whatever handlers it has."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        with httpx.Client(base_url=live_server, timeout=30) as http:
            http.get(f"/v1/environments?token={SECRET}", headers=AUTH)
        deadline = time.monotonic() + 10
        while not records:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    [record] = records
    assert SECRET not in record.getMessage()
    assert "/v1/environments?[redacted]" in record.getMessage()

"""Configuration: parsing, resource paths, and exit code 2 with the variable named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gke_inference_worker.config import BatchConfig, ConfigError, StreamingConfig

WORKER_BIN = str(Path(sys.executable).with_name("gke-inference-worker"))

STREAMING = {
    "GOOGLE_CLOUD_PROJECT": "my-project",
    "INPUT_SUBSCRIPTION": "requests-sub",
    "OUTPUT_TOPIC": "projects/other/topics/results",
    "DEAD_LETTER_TOPIC": "dead-letters",
    "MODEL_ENDPOINT": "http://localhost:8000/v1/",
    "MODEL_NAME": "google/gemma-3-1b-it",
}


def test_streaming_defaults_and_resource_paths():
    config = StreamingConfig.from_env(STREAMING)
    assert config.input_subscription == "projects/my-project/subscriptions/requests-sub"
    assert config.output_topic == "projects/other/topics/results"
    assert config.dead_letter_topic == "projects/my-project/topics/dead-letters"
    assert config.model_endpoint == "http://localhost:8000"
    assert (config.max_concurrency, config.metrics_port, config.max_attempts) == (8, 9090, 3)
    assert (config.request_timeout_s, config.shutdown_grace_s) == (120.0, 25.0)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("MAX_CONCURRENCY", "0", "integer 1..1024"),
        ("MAX_CONCURRENCY", "lots", "valid integer"),
        ("REQUEST_TIMEOUT_S", "-1", "greater than 0"),
        ("MODEL_ENDPOINT", "localhost:8000", "http:// or https://"),
        ("OUTPUT_TOPIC", "projects/p/subscriptions/s", "projects/PROJECT/topics/NAME"),
        ("INPUT_SUBSCRIPTION", "x", "not a valid Pub/Sub id"),
    ],
)
def test_streaming_config_errors_name_variable_value_and_accepted(variable, value, fragment):
    with pytest.raises(ConfigError) as info:
        StreamingConfig.from_env({**STREAMING, variable: value})
    [problem] = info.value.problems
    assert problem.variable == variable
    assert problem.value == value
    assert fragment in str(problem)


def test_project_is_required_for_ids_only():
    env = {k: v for k, v in STREAMING.items() if k != "GOOGLE_CLOUD_PROJECT"}
    with pytest.raises(ConfigError) as info:
        StreamingConfig.from_env(env)
    assert info.value.problems[0].variable == "GOOGLE_CLOUD_PROJECT"
    full = {
        **env,
        "INPUT_SUBSCRIPTION": "projects/p/subscriptions/s1",
        "DEAD_LETTER_TOPIC": "projects/p/topics/d1",
    }
    assert StreamingConfig.from_env(full).project is None


def test_batch_config_requires_index_and_validates_patterns():
    base = {
        "INPUT_DIR": "/in",
        "OUTPUT_DIR": "/out",
        "MODEL_ENDPOINT": "http://m:8000",
        "MODEL_NAME": "m",
    }
    with pytest.raises(ConfigError) as info:
        BatchConfig.from_env(base)
    assert [p.variable for p in info.value.problems] == ["JOB_COMPLETION_INDEX"]
    config = BatchConfig.from_env({**base, "JOB_COMPLETION_INDEX": "7"})
    assert (config.input_name, config.output_name) == (
        "input_shard_7.jsonl",
        "output_shard_7.jsonl",
    )
    assert config.max_failure_fraction == 0.05
    with pytest.raises(ConfigError, match="INPUT_PATTERN"):
        BatchConfig.from_env({**base, "JOB_COMPLETION_INDEX": "7", "INPUT_PATTERN": "fixed.jsonl"})


@pytest.mark.parametrize("mode", ["streaming", "batch"])
def test_cli_config_error_exits_2_naming_the_variable(mode):
    env = {
        "PATH": "/usr/bin:/bin",
        "MODEL_ENDPOINT": "http://127.0.0.1:9",
        "MODEL_NAME": "m",
        "MAX_CONCURRENCY": "many",
    }
    result = subprocess.run(
        [WORKER_BIN, mode], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    lines = [json.loads(line) for line in stderr.splitlines()]
    problems = {entry["variable"]: entry for entry in lines}
    assert problems["MAX_CONCURRENCY"]["value"] == "many"
    assert problems["MAX_CONCURRENCY"]["accepted"] == "integer 1..1024"
    assert "MAX_CONCURRENCY='many'" in problems["MAX_CONCURRENCY"]["msg"]
    required = {"INPUT_SUBSCRIPTION"} if mode == "streaming" else {"JOB_COMPLETION_INDEX"}
    assert required <= set(problems)

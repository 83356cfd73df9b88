"""model.download: when the weights are fetched from Hugging Face, and how (on plans).

unset: iff a token secret is named; true: also anonymously (public models, no
secret anywhere in the Job); false: never; a gs:// model: never. The download
script is also run here against a stand-in ``huggingface_hub`` to rehearse
what the pod executes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan, RecordedResource
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.model_download import (
    download_script,
    needs_download,
    prepare_script,
    weights_location,
)
from gke_inference.workloads.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads" / "examples"
JOB = "kubernetes:batch/v1:Job"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
DOWNLOAD = "gke-inference:workloads:ModelDownload"


def gemma(**model: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
    data["model"].update(model)
    return data


def plan_of(tmp_path: Path, data: dict[str, Any]) -> Plan:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data))
    return plan_workload("dev", str(spec), project_dir=REPO)


def pod(job: RecordedResource) -> dict[str, Any]:
    return dict(job.inputs["spec"]["template"]["spec"])


def steps(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec["initContainers"], *pod_spec["containers"]]


@pytest.mark.parametrize(
    ("download", "token", "expected"),
    [
        (None, None, False),
        (None, "hf", True),
        (True, None, True),
        (True, "hf", True),
        (False, None, False),
        (False, "hf", False),
    ],
)
def test_needs_download(download: bool | None, token: str | None, expected: bool) -> None:
    data = gemma(download=download)
    if token:
        data["huggingFaceTokenSecret"] = token
    assert needs_download(deployment_for(parse_spec(data))) is expected


def test_gs_model_never_downloads() -> None:
    data = gemma(id="gs://acme-weights/gemma-3-1b-it")
    data["huggingFaceTokenSecret"] = "hf"
    deployment = deployment_for(parse_spec(data))
    assert needs_download(deployment) is False
    assert weights_location(deployment.spec) == "gs://acme-weights/gemma-3-1b-it"


def test_download_true_with_a_gs_model_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(gemma(id="gs://acme-weights/gemma-3-1b-it", download=True))
    assert any("download" in p.path for p in info.value.problems)


def test_public_model_downloads_without_any_secret(tmp_path: Path) -> None:
    p = plan_of(tmp_path, gemma(download=True))
    job = p.one(JOB, "gemma-3-1b-model-download-job")
    assert job.parent == p.one(DOWNLOAD).urn
    assert job.urn in p.one(DEPLOYMENT, "gemma-3-1b-server").depends_on
    assert not p.by_type(SECRET_IAM)  # no Secret Manager grant
    pod_spec = pod(job)
    assert "secrets" not in [v["name"] for v in pod_spec["volumes"]]
    for step in steps(pod_spec):
        assert "/secrets" not in [m["mountPath"] for m in step["volumeMounts"]]
        names = [e["name"] for e in step["env"]]
        assert "TOKEN_SECRET" not in names and "HF_TOKEN" not in names
        script = step["command"][-1]
        assert "gcloud secrets" not in script and "/secrets/" not in script
    download = next(s for s in steps(pod_spec) if s["name"] == "download")
    assert "token=False," in download["command"][-1]


def test_download_true_with_a_token_uses_it(tmp_path: Path) -> None:
    data = gemma(download=True)
    data["huggingFaceTokenSecret"] = "hf-read"
    p = plan_of(tmp_path, data)
    assert p.one(SECRET_IAM).inputs["secretId"] == "hf-read"
    pod_spec = pod(p.one(JOB, "gemma-3-1b-model-download-job"))
    prepare, download, upload = steps(pod_spec)
    assert "gcloud secrets versions access latest" in prepare["command"][-1]
    assert {"name": "TOKEN_SECRET", "value": "hf-read"} in prepare["env"]
    assert 'open("/secrets/hf-token")' in download["command"][-1]
    assert "/secrets" in [m["mountPath"] for m in download["volumeMounts"]]
    assert "/secrets" not in [m["mountPath"] for m in upload["volumeMounts"]]


def test_download_false_never_downloads_even_with_a_token(tmp_path: Path) -> None:
    data = gemma(download=False)
    data["huggingFaceTokenSecret"] = "hf-read"
    p = plan_of(tmp_path, data)
    assert not p.by_type(DOWNLOAD) and not p.by_type(JOB) and not p.by_type(SECRET_IAM)
    assert p.one("gke-inference:workloads:OnlineInference").depends_on == []


@pytest.mark.parametrize("with_token", [True, False])
def test_scripts_are_valid_shell(with_token: bool) -> None:
    for script in (prepare_script(with_token), download_script(with_token)):
        assert subprocess.run(["sh", "-n", "-c", script], check=False).returncode == 0


def _python_part(script: str) -> str:
    match = re.search(r"<<'EOF'\n(.*)\nEOF\n", script, re.S)
    assert match
    return match.group(1)


STAND_IN = """
import json, os
def snapshot_download(**kwargs):
    with open(os.environ["CALLS"], "w") as out:
        json.dump(kwargs, out)
    return kwargs["local_dir"]
"""


@pytest.mark.parametrize("with_token", [True, False])
def test_download_step_rehearsed(tmp_path: Path, with_token: bool) -> None:
    """Run the step's Python with a stand-in huggingface_hub: what it passes, what it reads."""
    package = tmp_path / "site" / "huggingface_hub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    code = _python_part(download_script(with_token))
    token_file = "/secrets/hf-token"
    code = code.replace(token_file, str(tmp_path / "hf-token"))
    (tmp_path / "hf-token").write_text("hf_abc\n")
    calls = tmp_path / "calls.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "site"),
        "MODEL_ID": "google/gemma-3-1b-it",
        "MODEL_REVISION": "main",
        "CALLS": str(calls),
    }
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    kwargs = json.loads(calls.read_text())
    assert kwargs["repo_id"] == "google/gemma-3-1b-it" and kwargs["revision"] == "main"
    # huggingface_hub: token=False sends no token and ignores any stored one.
    assert kwargs["token"] == ("hf_abc" if with_token else False)


def test_the_download_disk_follows_the_checkpoint_not_the_served_precision() -> None:
    from gke_inference.workloads.kinds import deployment_for
    from gke_inference.workloads.loading import checkpoint_gib

    def gib(**model: object) -> float:
        spec = parse_spec({
            "name": "l", "kind": "online", "accelerator": "l4", "precision": "int4",
            "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b", **model},
        })  # fmt: skip
        deployment = deployment_for(spec)
        return checkpoint_gib(spec, deployment.require_sizing())

    # A bf16 checkpoint quantized while loading is 4x the int4 weights; an AWQ
    # checkpoint already is the int4 weights.
    assert gib(prequantized=False) == pytest.approx(4 * gib(prequantized=True))


def test_the_plan_says_where_it_expects_the_weights(tmp_path: Path) -> None:
    staged = plan_of(tmp_path, gemma(download=False))
    assert (
        staged.outputs["weights"] == "gs://acme-inference-dev-inf-dev-models/google/gemma-3-1b-it"
    )
    assert staged.outputs["downloadsWeights"] is False
    other = plan_of(tmp_path, gemma(id="gs://other-team-models/gemma/3-1b"))
    assert other.outputs["weights"] == "gs://other-team-models/gemma/3-1b"

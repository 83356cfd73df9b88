"""``gke-inference size``: the shape of every kind, and where its weights come from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "workloads" / "examples"
# What `size --format json` printed before weights and ComfyUI (kept: a superset).
SIZED_KEYS = {
    "workload",
    "accelerator",
    "machineType",
    "computeClass",
    "tensorParallel",
    "pipelineParallel",
    "weightsGiB",
    "kvCacheGiB",
    "usableGiB",
    "vllmArgs",
}


def size_json(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    assert main(["size", str(path), "--format", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_comfyui_reports_its_one_gpu_shape_and_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["size", str(EXAMPLES / "comfyui-l4.yaml")]) == 0
    captured = capsys.readouterr()
    assert "model: is required" not in captured.err
    for row in ("gpu-l4-x1", "g2-standard-8", "devices per replica  1", "comfyui/"):
        assert row in captured.out
    doc = size_json(capsys, EXAMPLES / "comfyui-l4.yaml")
    assert set(doc) >= SIZED_KEYS
    assert doc["computeClass"] == "gpu-l4-x1" and doc["devices"] == 1
    assert doc["vllmArgs"] == [] and doc["weightsGiB"] is None
    assert doc["weights"]["location"] == "gs://<modelBucket>/comfyui/"


def test_comfyui_cost_optimized_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((EXAMPLES / "comfyui-l4.yaml").read_text())
    data["costOptimized"] = True
    spec = tmp_path / "comfyui.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert size_json(capsys, spec)["computeClass"] == "gpu-l4-x1-co"


@pytest.mark.parametrize(
    ("example", "location", "download"),
    [
        ("gemma-3-1b-l4.yaml", "gs://<modelBucket>/google/gemma-3-1b-it", False),
        ("batch-llama-8b-l4.yaml", "gs://<modelBucket>/meta-llama/llama-3.1-8b-instruct", True),
    ],
)
def test_weights_location_and_download(
    example: str, location: str, download: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = size_json(capsys, EXAMPLES / example)
    assert set(doc) >= SIZED_KEYS
    assert doc["weights"]["location"] == location
    assert doc["weights"]["download"] is download
    assert main(["size", str(EXAMPLES / example)]) == 0
    out = capsys.readouterr().out
    assert f"weights: {location}" in out
    assert ("a download Job copies" in out) is download


def test_public_model_download_and_gs_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
    data["model"]["download"] = True
    spec = tmp_path / "public.yaml"
    spec.write_text(yaml.safe_dump(data))
    weights = size_json(capsys, spec)["weights"]
    assert weights["download"] is True and "anonymously" in weights["note"]

    data["model"] = {"id": "gs://team-weights/gemma/1b", "preset": "gemma-3-1b"}
    data["huggingFaceTokenSecret"] = "hf"
    spec.write_text(yaml.safe_dump(data))
    weights = size_json(capsys, spec)["weights"]
    assert weights == {
        "location": "gs://team-weights/gemma/1b",
        "download": False,
        "note": "read from this bucket as is (a gs:// model is never downloaded)",
    }

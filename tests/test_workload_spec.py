"""Workload spec validation: one message, paths, accepted values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gke_inference.core.errors import SpecError
from gke_inference.workloads.spec import load_spec, parse_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "workloads" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_parse(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name and spec.kind in {"online", "batch", "streaming", "comfyui"}


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    return {p.path: p.message for p in info.value.problems}


def test_every_problem_is_reported_with_its_path() -> None:
    found = problems({
        "name": "Bad_Name", "kind": "realtime", "accelerator": "v100",
        "model": {"id": "not a model"}, "scaling": {"minReplicas": 3, "maxReplicas": 1},
    })  # fmt: skip
    assert "DNS label" in found["name"]
    assert "'online'" in found["kind"]
    assert "accepted: l4" in found["accelerator"]
    assert "Hugging Face id" in found["model.id"]


def test_model_needs_preset_or_architecture() -> None:
    found = problems({"name": "x", "kind": "online", "accelerator": "l4", "model": {"id": "a/b"}})
    assert "exactly one of preset" in found["model"]


def test_unknown_preset_lists_the_known_ones() -> None:
    found = problems({"name": "x", "kind": "online", "accelerator": "l4",
                      "model": {"id": "a/b", "preset": "gpt-5"}})  # fmt: skip
    assert "llama-3.3-70b" in found["model.preset"]


def test_server_must_match_the_accelerator() -> None:
    found = problems({"name": "x", "kind": "online", "accelerator": "tpu-v5e",
                      "model": {"id": "a/b", "preset": "gemma-3-1b"}})  # fmt: skip
    assert "use vllm-tpu with a TPU" in found["(top level)"]


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(bad) in str(info.value)

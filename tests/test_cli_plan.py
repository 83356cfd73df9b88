"""`gke-inference plan`: the readable tree and the JSON contract."""

from __future__ import annotations

import json

import pytest

from gke_inference.cli import main


def test_json_has_the_documented_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev", "--format", "json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)  # exactly one JSON object on stdout
    assert doc["project"] == "gke-inference"
    assert doc["stack"] == "dev"
    assert isinstance(doc["outputs"], dict)
    keys = {"urn", "type", "name", "parent", "custom", "inputs", "protect", "provider", "dependsOn"}
    for resource in doc["resources"]:
        assert keys <= set(resource)
        assert isinstance(resource["dependsOn"], list)
    cluster = next(r for r in doc["resources"] if r["type"] == "gcp:container/cluster:Cluster")
    assert cluster["inputs"]["privateClusterConfig"]["enablePrivateNodes"] is True
    assert doc["outputs"]["kubeconfig"] == "[secret]"
    assert "gke-gcloud-auth-plugin" not in out  # the secret never reaches the plan


def test_text_tree_shows_components_and_key_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "prod", "--config", "cluster.mode=autopilot"]) == 0
    out = capsys.readouterr().out
    assert "gke-inference:platform:BasePlatform  base" in out
    assert "    gke-inference:platform:GkeCluster  base-gke" in out
    assert "enableAutopilot=True" in out
    assert "deletionProtection=True" in out
    assert "[protected]" in out
    assert "gcp:container/nodePool:NodePool" not in out

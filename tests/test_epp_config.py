"""The endpoint picker's scheduling config, against what the pinned picker does with it.

Field names below are the JSON tags of gateway-api-inference-extension v1.5.0
(``apix/config/v1alpha1/endpointpickerconfig_types.go`` for the document,
decoded strictly; ``approximateprefix/types.go`` for the prefix parameters,
decoded loosely, so an unknown key would be ignored without a word), and the
plugin types are ones ``cmd/epp/runner`` registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan
from gke_inference.workloads import epp_config
from gke_inference.workloads.inference_pool import CONFIG_DIGEST_ANNOTATION
from gke_inference.workloads.sizing import size
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_metrics import METRICS

REPO = Path(__file__).resolve().parents[1]

# EndpointPickerConfig, PluginSpec, SchedulingProfile, SchedulingPlugin (strict decode)
DOCUMENT_FIELDS = {
    "apiVersion", "kind", "featureGates", "plugins", "schedulingProfiles",
    "saturationDetector", "dataLayer", "flowControl", "parser",
}  # fmt: skip
PLUGIN_FIELDS = {"name", "type", "parameters"}
PROFILE_FIELDS = {"name", "plugins"}
PROFILE_PLUGIN_FIELDS = {"pluginRef", "weight"}
# a subset of what v1.5.0's registerInTreePlugins registers: the ones rendered here
REGISTERED = {"queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"}


def pool_spec(**routing: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "kind": "online",
        "model": {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"},
        "accelerator": "l4",
        "contextLength": 16384,
        "routing": {"mode": "inference-pool", **routing},
    }


def plan_of(tmp_path: Path, data: dict[str, Any]) -> Plan:
    file = tmp_path / "chat.yaml"
    file.write_text(yaml.safe_dump(data))
    return plan_workload("dev", str(file), project_dir=REPO)


def picker(plan: Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the picker's pod template, its parsed config as mounted)."""
    deployment = next(
        d for d in plan.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "chat-epp"
    )  # fmt: skip
    template = deployment.inputs["spec"]["template"]
    (container,) = template["spec"]["containers"]
    path = next(a for a in container["args"] if a.startswith("--config-file=")).split("=", 1)[1]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = next(
        c for c in plan.by_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == volume["configMap"]["name"]
    )  # fmt: skip
    text = config_map.inputs["data"][path.removeprefix(mount["mountPath"] + "/")]
    return template, yaml.safe_load(text)


def test_the_mounted_config_is_the_one_the_picker_is_told_to_read(tmp_path: Path) -> None:
    template, config = picker(plan_of(tmp_path, pool_spec()))
    assert config["apiVersion"] == epp_config.API_VERSION and config["kind"] == epp_config.KIND
    text = epp_config.config_text(
        parse_spec(pool_spec()).routing.scorer_weights, size(parse_spec(pool_spec()))
    )
    assert template["metadata"]["annotations"][CONFIG_DIGEST_ANNOTATION] == epp_config.digest(text)


def test_the_document_decodes_strictly_and_every_reference_resolves(tmp_path: Path) -> None:
    _, config = picker(plan_of(tmp_path, pool_spec()))
    assert set(config) <= DOCUMENT_FIELDS
    names = set()
    for plugin in config["plugins"]:
        assert set(plugin) <= PLUGIN_FIELDS
        assert plugin["type"] in REGISTERED
        names.add(plugin.get("name", plugin["type"]))  # the loader names a plugin by its type
    (profile,) = config["schedulingProfiles"]
    assert set(profile) <= PROFILE_FIELDS
    for ref in profile["plugins"]:
        assert set(ref) <= PROFILE_PLUGIN_FIELDS
        assert ref["pluginRef"] in names
        assert isinstance(ref["weight"], float)


def test_default_weights_are_the_pinned_pickers_defaults(tmp_path: Path) -> None:
    _, config = picker(plan_of(tmp_path, pool_spec()))
    weights = {p["pluginRef"]: p["weight"] for p in config["schedulingProfiles"][0]["plugins"]}
    assert weights == {
        "queue-scorer": 2.0,
        "kv-cache-utilization-scorer": 2.0,
        "prefix-cache-scorer": 3.0,
    }


def test_prefix_parameters_are_ones_the_index_reads_and_follow_the_sizing(tmp_path: Path) -> None:
    _, config = picker(plan_of(tmp_path, pool_spec(scorers={"prefixCache": 5})))
    (prefix,) = [p for p in config["plugins"] if p["type"] == "prefix-cache-scorer"]
    parameters = prefix["parameters"]
    for key, value in parameters.items():
        assert type(value) is epp_config.PREFIX_PARAMETERS[key], key
    assert parameters["maxPrefixTokensToMatch"] == 16384  # the server's --max-model-len
    assert parameters["blockSizeTokens"] == 16  # the sizing's --block-size
    assert parameters["autoTune"] is True
    assert "lruCapacityPerServer" not in parameters  # v1.5.0 never passes it to the index
    # autoTune learns block size and capacity from this metric of the pinned vLLM
    assert METRICS["vllm:cache_config_info"].status((0, 11, 2)) == "exported"


def test_a_scorer_at_weight_zero_is_left_out(tmp_path: Path) -> None:
    _, config = picker(plan_of(tmp_path, pool_spec(scorers={"kvCache": 0})))
    assert [p["type"] for p in config["plugins"]] == ["queue-scorer", "prefix-cache-scorer"]
    assert [p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]] == [
        "queue-scorer",
        "prefix-cache-scorer",
    ]


def test_new_weights_roll_the_picker(tmp_path: Path) -> None:
    before, _ = picker(plan_of(tmp_path, pool_spec()))
    after, _ = picker(plan_of(tmp_path, pool_spec(scorers={"prefixCache": 4})))
    key = CONFIG_DIGEST_ANNOTATION
    assert before["metadata"]["annotations"][key] != after["metadata"]["annotations"][key]


@pytest.mark.parametrize(
    ("routing", "path", "needle"),
    [
        ({"mode": "service", "scorers": {"queue": 1}}, "routing", "mode 'inference-pool'"),
        ({"scorers": {"queue": 0, "kvCache": 0, "prefixCache": 0}}, "routing.scorers", "above 0"),
        ({"scorers": {"queue": -1}}, "routing.scorers.queue", "0"),
        ({"scorers": {"prefix": 1}}, "routing.scorers.prefix", "not"),
    ],
)
def test_weights_are_validated(routing: dict[str, Any], path: str, needle: str) -> None:
    data = pool_spec(**routing)
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message


# --------------------------------------------------------------------------- pool metrics

# gateway-api-inference-extension v1.5.0 pkg/epp/metrics/metrics.go: subsystem
# inference_pool, gauges labelled by the pool's name (poolLabels = ["name"])
PICKER_GAUGES = {"inference_pool_average_queue_size", "inference_pool_average_kv_cache_utilization"}


@pytest.mark.parametrize(
    ("metric", "gauge", "target"),
    [
        ("pool-queue-depth", "inference_pool_average_queue_size", "10"),
        ("pool-kv-cache", "inference_pool_average_kv_cache_utilization", "800m"),
    ],
)
def test_hpa_on_the_pickers_pool_average(
    tmp_path: Path, metric: str, gauge: str, target: str
) -> None:
    data = pool_spec()
    data["scaling"] = {"minReplicas": 1, "maxReplicas": 4, "metric": metric}
    plan = plan_of(tmp_path, data)
    (hpa,) = plan.by_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    (source,) = hpa.inputs["spec"]["metrics"]
    assert source["type"] == "External"
    external = source["external"]
    assert external["metric"]["name"] == f"prometheus.googleapis.com|{gauge}|gauge"
    assert gauge in PICKER_GAUGES
    # the pool's own series: its name label, in this namespace (external metrics are
    # project-wide in the adapter)
    (pool,) = plan.by_type("kubernetes:inference.networking.k8s.io/v1:InferencePool")
    assert external["metric"]["selector"]["matchLabels"] == {
        "metric.labels.name": pool.inputs["metadata"]["name"],
        "resource.labels.namespace": pool.inputs["metadata"]["namespace"],
    }
    # already an average per pod: a Value target, not AverageValue (which divides again)
    assert external["target"] == {"type": "Value", "value": target}


def test_pool_metrics_need_a_pool() -> None:
    data = pool_spec()
    data["routing"] = {"mode": "service"}
    data["scaling"] = {"metric": "pool-queue-depth"}
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert "only routing.mode 'inference-pool' has" in problem.message
    assert "use 'queue-depth'" in problem.message


def test_a_pool_kv_cache_target_above_one_is_refused() -> None:
    from gke_inference.workloads.kinds import deployment_for

    data = pool_spec()
    data["scaling"] = {"metric": "pool-kv-cache", "target": 1.5}
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "scaling.target" and "can never be reached" in problem.message

"""Autoscaling on latency: the recording rule, rehearsed by Prometheus' own rule engine.

The plan is checked for the chain the HPA depends on (pod label -> PodMonitoring
target label -> rule selector -> recorded name -> HPA metric name), and the
rule itself runs under ``promtool test rules`` on series laid out as vLLM
v0.11.2 exports them (one histogram per engine, its bucket bounds), so the
quantile, the idle-pod zero and the isolation from other workloads are the
evaluator's answers, not ours.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_platform, plan_workload
from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import Plan
from gke_inference.workloads import latency
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.serving_spec import LatencySettings
from gke_inference.workloads.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
RULES = "kubernetes:monitoring.googleapis.com/v1:Rules"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"


def promtool() -> str:
    found = Path(sys.executable).with_name("promtool")
    path = str(found) if found.exists() else shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: run scripts/setup.sh (it unpacks Debian's into .venv/bin)"
        )
    return path


def spec_data(**scaling: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "kind": "online",
        "model": {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"},
        "accelerator": "l4",
        "scaling": {"minReplicas": 1, "maxReplicas": 4, **scaling},
    }


def plan_of(tmp_path: Path, **scaling: Any) -> Plan:
    file = tmp_path / "chat.yaml"
    file.write_text(yaml.safe_dump(spec_data(**scaling)))
    return plan_workload("dev", str(file), project_dir=REPO)


# --------------------------------------------------------------------------- the plan


def test_hpa_follows_the_gauge_the_rule_records(tmp_path: Path) -> None:
    plan = plan_of(
        tmp_path,
        metric="time-to-first-token",
        target=0.5,
        latency={"quantile": 0.95, "windowSeconds": 90},
    )
    rules = plan.one(RULES)
    group = rules.inputs["spec"]["groups"][0]
    rule = group["rules"][0]
    assert rule["record"] == "pod:vllm_time_to_first_token_seconds:p95_90s"
    assert group["interval"] == latency.RULE_INTERVAL
    assert 'vllm:time_to_first_token_seconds_bucket{workload="chat"}[90s]' in rule["expr"]
    assert "histogram_quantile(0.95," in rule["expr"]
    assert rules.inputs["metadata"]["namespace"] == "inference"

    hpa = plan.one(HPA)
    (metric,) = hpa.inputs["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == f"prometheus.googleapis.com|{rule['record']}|gauge"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "500m"}
    assert rules.urn in hpa.depends_on  # the gauge exists before the HPA asks for it

    objects = kubernetes_objects(plan)
    assert validate_manifests(objects) == []  # the Rules CRD schema, CEL rules included
    assert check_resources(plan.resources, None, source="default").mandatory == []


def test_selected_label_is_the_one_the_platform_scrape_attaches(tmp_path: Path) -> None:
    """The rule picks series by ``workload``; the platform's PodMonitoring must copy it
    from a label every model-server pod of the workload carries, or nothing is recorded."""
    platform = plan_platform("dev", project_dir=REPO)
    monitoring = next(
        r for r in platform.by_type("kubernetes:monitoring.googleapis.com/v1:PodMonitoring")
        if r.inputs["metadata"]["name"] == "model-servers"
    )  # fmt: skip
    (copied,) = [
        label
        for label in monitoring.inputs["spec"]["targetLabels"]["fromPod"]
        if label["to"] == latency.WORKLOAD_LABEL
    ]
    workload = plan_of(tmp_path, metric="inter-token-latency")
    deployment = workload.one("kubernetes:apps/v1:Deployment")
    pod_labels = deployment.inputs["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[copied["from"]] == "chat"
    assert (
        f'{{workload="{pod_labels[copied["from"]]}"}}'
        in workload.one(RULES).inputs["spec"]["groups"][0]["rules"][0]["expr"]
    )


def test_other_metrics_record_nothing(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, metric="queue-depth")
    assert plan.by_type(RULES) == []


@pytest.mark.parametrize(
    ("scaling", "path", "needle"),
    [
        ({"metric": "queue-depth", "latency": {"quantile": 0.9}}, "scaling", "latency is for"),
        ({"metric": "time-to-first-token", "latency": {"quantile": 0.999}}, "scaling.latency.quantile", "0.99"),
        ({"metric": "time-to-first-token", "latency": {"windowSeconds": 30}}, "scaling.latency.windowSeconds", "60"),
        ({"metric": "inter-token-latency", "latency": {"every": 1}}, "scaling.latency.every", "not"),
    ],
)  # fmt: skip
def test_latency_settings_are_validated(scaling: dict[str, Any], path: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_data(**scaling))
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message


@pytest.mark.parametrize(
    ("metric", "target", "needle"),
    [
        ("time-to-first-token", 0.0005, "0.001 s to 2560 s"),
        ("time-to-first-token", 3000, "0.001 s to 2560 s"),
        ("inter-token-latency", 80, "0.01 s to 80 s"),
    ],
)
def test_targets_the_histogram_cannot_resolve_are_refused(
    metric: str, target: float, needle: str
) -> None:
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(spec_data(metric=metric, target=target)))
    (problem,) = info.value.problems
    assert problem.path == "scaling.target" and needle in problem.message


def test_a_histogram_the_image_does_not_export_is_refused() -> None:
    """vllm:inter_token_latency_seconds arrived in vLLM 0.10.2: an older custom image
    would record nothing and the HPA would never scale."""
    data = spec_data(metric="inter-token-latency")
    data["server"] = {"image": "docker.io/vllm/vllm-openai:v0.10.1"}
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "scaling.metric"
    assert "only exists from vLLM v0.10.2" in problem.message


# --------------------------------------------------------------------------- rehearsal

TTFT = "vllm:time_to_first_token_seconds"
STEP_SECONDS = 15  # the platform PodMonitoring's scrape interval


def histogram_series(
    name: str, labels: dict[str, str], per_scrape: dict[float, int], scrapes: int
) -> list[dict[str, str]]:
    """One vLLM engine's histogram as promtool input: ``per_scrape`` maps a bucket
    bound to the requests that land at or below it between two scrapes (cumulative,
    as Prometheus buckets are); bounds are vLLM's own."""
    bounds = latency.LATENCY_METRICS["time-to-first-token"].buckets
    assert set(per_scrape) <= set(bounds)
    total = max(per_scrape.values(), default=0)
    series = []
    running = 0
    for bound in bounds:
        running = max(running, per_scrape.get(bound, 0))
        series.append((f'le="{bound:g}"', running))
    series.append(('le="+Inf"', total))
    shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
    out = [
        {"series": f"{name}_bucket{{{shown},{le}}}", "values": f"0+{n}x{scrapes}"}
        for le, n in series
    ]
    out.append({"series": f"{name}_count{{{shown}}}", "values": f"0+{total}x{scrapes}"})
    return out


def run_promtool(tmp_path: Path, spec: dict[str, object], tests: list[dict[str, Any]]) -> str:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    check = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = tmp_path / "unit.yaml"
    unit.write_text(
        yaml.safe_dump({"rule_files": [rules.name], "evaluation_interval": "30s", "tests": tests})
    )
    run = subprocess.run(
        [promtool(), "test", "rules", unit.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    return run.stdout + run.stderr if run.returncode else ""


def recorded(
    tmp_path: Path,
    settings: LatencySettings,
    series: list[dict[str, str]],
    expected: dict[str, float],
) -> str:
    """Run the rule of ``settings`` for workload "chat" over ``series`` (one scrape per
    STEP_SECONDS) and compare its value per pod at 5 minutes; promtool's complaint, or "".
    """
    record = latency.record_name("time-to-first-token", settings)
    samples = [
        {"labels": f'{record}{{pod="{pod}",workload="chat"}}', "value": value}
        for pod, value in expected.items()
    ]
    test = {"expr": record, "eval_time": "5m", "exp_samples": samples}
    return run_promtool(
        tmp_path,
        latency.rules_spec("time-to-first-token", settings, "chat"),
        [{"interval": f"{STEP_SECONDS}s", "input_series": series, "promql_expr_test": [test]}],
    )


def test_recorded_quantile_per_pod_as_prometheus_evaluates_it(tmp_path: Path) -> None:
    """Pod a: two engines, 10 requests per scrape between them (5 within 0.25 s, 9
    within 0.5 s, all within 0.75 s): p90 is 0.5 s, p95 0.625 s (linear within the
    bucket). Pod b served nothing: 0, not NaN and not absent. Pod c belongs to another
    workload: never recorded here."""
    scrapes = 30
    workload = {"workload": "chat", "model_name": "gemma"}
    series = [
        *histogram_series(TTFT, {**workload, "pod": "chat-a", "engine": "0"}, {0.25: 3, 0.5: 5}, scrapes),
        *histogram_series(TTFT, {**workload, "pod": "chat-a", "engine": "1"}, {0.25: 2, 0.5: 4, 0.75: 5}, scrapes),
        *histogram_series(TTFT, {**workload, "pod": "chat-b", "engine": "0"}, {}, scrapes),
        *histogram_series(TTFT, {"workload": "other", "model_name": "x", "pod": "other-c", "engine": "0"}, {40.0: 7}, scrapes),
    ]  # fmt: skip
    for quantile, expected in ((0.9, 0.5), (0.95, 0.625)):
        settings = LatencySettings(quantile=quantile, window_seconds=120)
        failure = recorded(tmp_path, settings, series, {"chat-a": expected, "chat-b": 0})
        assert failure == "", failure


def test_the_window_is_the_rate_window(tmp_path: Path) -> None:
    """Traffic that turned slow 60 s ago: 16 scrapes of 10 fast requests (<= 0.1 s),
    then 4 of 10 slow ones (2.5-5 s). At p75 a 60 s window sees only the slow ones
    (2.5 + 0.75 x 2.5 = 4.375 s), a 290 s window mostly the fast ones before them
    (150 of 190: 0.08 + 0.02 x 142.5/150 = 0.099 s). The recorded value moves with
    windowSeconds, so the setting really is the rule's window. 290, not 300: the rule
    runs at 300 s, and a 300 s window would start on the first scrape (Prometheus 2
    includes a window's left edge, Prometheus 3 does not)."""
    labels = 'workload="chat",pod="chat-a",model_name="m",engine="0"'
    bounds = [f"{b:g}" for b in latency.LATENCY_METRICS["time-to-first-token"].buckets]
    series = []
    for le in (*bounds, "+Inf"):
        fast = 10 if le == "+Inf" or float(le) >= 0.1 else 0
        slow = 10 if le == "+Inf" or float(le) >= 5.0 else 0
        values = f"0+{fast}x16 {16 * fast + slow}+{slow}x3"
        series.append({"series": f'{TTFT}_bucket{{{labels},le="{le}"}}', "values": values})
    series.append({"series": f"{TTFT}_count{{{labels}}}", "values": "0+10x16 170+10x3"})
    for window, expected in ((60, 4.375), (290, 0.099)):
        settings = LatencySettings(quantile=0.75, window_seconds=window)
        failure = recorded(tmp_path, settings, series, {"chat-a": expected})
        assert failure == "", failure


# --------------------------------------------------------------------------- policy

RECORDED_RULE = "k8s-hpa-recorded-metric-has-rule"


def rule_messages(plan: Plan) -> list[str]:
    report = check_resources(plan.resources, None, source="default")
    return [v.message for v in report.mandatory if v.policy == RECORDED_RULE]


def test_policy_passes_the_planned_pair_and_flags_an_hpa_without_its_rule(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path, metric="time-to-first-token")
    assert rule_messages(plan) == []
    without = copy.deepcopy(plan)
    without.resources = [r for r in without.resources if r.type != RULES]
    (message,) = rule_messages(without)
    assert "pod:vllm_time_to_first_token_seconds:p90_120s" in message
    assert "no Rules object" in message
    elsewhere = copy.deepcopy(plan)
    elsewhere.one(RULES).inputs["metadata"]["namespace"] = "other"
    assert len(rule_messages(elsewhere)) == 1  # a rule in another namespace sees other pods


def test_policy_flags_a_rule_on_a_histogram_the_image_no_longer_exports(
    tmp_path: Path,
) -> None:
    """vllm:time_per_output_token_seconds is hidden from vLLM 0.12: a rule reading it
    next to a 0.12 server records nothing."""
    plan = copy.deepcopy(plan_of(tmp_path, metric="inter-token-latency"))
    rule = plan.one(RULES).inputs["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace(
        "vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"
    )
    assert rule_messages(plan) == []  # v0.11.2 still exports it
    container = plan.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["spec"][
        "containers"
    ][0]
    container["image"] = container["image"].replace("v0.11.2", "v0.12.0").split("@")[0]
    (message,) = rule_messages(plan)
    assert "vllm:time_per_output_token_seconds" in message and "v0.12" in message

"""Each kind's pods admit exactly their flows, evaluated over the rendered objects.

The cluster is the platform plan's NetworkPolicies (the namespace's default deny)
plus the workload plan's, with one endpoint per rendered pod template and the
addresses and pods a GKE cluster has around them (load balancers, the proxy-only
subnet, Managed Prometheus' collectors, the metadata server, the API server, the
internet, a pod of another namespace wearing the same labels, a pod someone
started by hand in the workload namespace). tests/support/netpol.py evaluates
every (source, destination, port) with NetworkPolicy semantics; each test
compares the whole set of allowed flows that touch the kind's pods with what the
kind needs, written out below.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.contract import PlatformOutputs
from gke_inference.core.errors import SpecError
from gke_inference.core.settings import NetworkSettings
from gke_inference.offline.manifests import kubernetes_objects
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan
from tests.conftest import platform_plan
from tests.support.examples import EXAMPLES, REPO
from tests.support.netpol import Cluster, Endpoint, network_policies, rendered_pods

NET = NetworkSettings()
NAMESPACE = "inference"

OUTSIDE = [
    Endpoint("health-checker", "35.191.3.4"),
    Endpoint("google-front-end", "130.211.1.2"),
    Endpoint("gateway-proxy", str(next(NET.proxy_only_cidr.hosts()) + 9)),
    Endpoint("internet", "203.0.113.7"),
    Endpoint("google-api", "142.250.72.10"),
    Endpoint("metadata", "169.254.169.254"),
    Endpoint("gke-metadata", "169.254.169.252"),
    Endpoint("node-local-dns", "169.254.20.10"),
    Endpoint("api-server", str(next(NET.control_plane_cidr.hosts()) + 1)),
    Endpoint("node", str(next(NET.node_cidr.hosts()) + 6)),
    Endpoint("vpc-host", "10.200.0.5"),
    Endpoint("collector", "10.64.200.2", "gmp-system", {"app.kubernetes.io/name": "collector"}),
    Endpoint("kube-dns", "10.64.200.3", "kube-system", {"k8s-app": "kube-dns"}),
    Endpoint("stranger", "10.64.200.4", NAMESPACE, {"app": "debug"}),
]
PROBES = [
    (53, "UDP"),
    *((p, "TCP") for p in (22, 53, 80, 443, 988, 6379, 8000, 8188, 9002, 9003, 9090, 12345)),
]

# What every pod that reads a bucket or calls a Google API sends: DNS (Cloud DNS on
# the metadata address, NodeLocal DNSCache), the metadata servers, public HTTPS.
DNS = {"metadata": {"53/UDP", "53/TCP"}, "node-local-dns": {"53/UDP", "53/TCP"}}
# Public HTTPS is one rule: Google's APIs (their default VIPs), the Hub, and any
# other public address (the load balancers' ranges are Google's too).
PUBLIC = ("google-api", "internet", "health-checker", "google-front-end")
GOOGLE = {
    "metadata": {"53/UDP", "53/TCP", "80/TCP"},
    "node-local-dns": {"53/UDP", "53/TCP"},
    "gke-metadata": {"988/TCP"},
    **{public: {"443/TCP"} for public in PUBLIC},
}
GATEWAY = {"health-checker", "google-front-end", "gateway-proxy"}


def expected(
    pod: str,
    ingress: Mapping[str, set[str]] | None = None,
    egress: Mapping[str, set[str]] | None = None,
) -> set[tuple[str, str, str]]:
    """``ingress``: port -> sources; ``egress``: destination -> ports."""
    flows = {(src, pod, port) for port, sources in (ingress or {}).items() for src in sources}
    flows |= {(pod, dst, port) for dst, ports in (egress or {}).items() for port in ports}
    return flows


def cluster(plan: Plan, stack: str = "dev", *platform_overrides: str) -> Cluster:
    platform = kubernetes_objects(platform_plan(stack, *platform_overrides))
    objects = kubernetes_objects(plan)
    pods = rendered_pods(objects, str(NET.pod_cidr))
    assert {p.namespace for p in pods} == {NAMESPACE}
    # A pod of another namespace with the same labels as the first rendered pod.
    twin = Endpoint("twin-elsewhere", "10.64.200.5", "default", dict(pods[0].labels))
    return Cluster(network_policies([*platform, *objects]), [*pods, *OUTSIDE, twin])


def flows_of(c: Cluster, *pods: str) -> set[tuple[str, str, str]]:
    return c.flows(pods, PROBES)


def plan(spec: str | Path, stack: str = "dev", *platform_overrides: str) -> Plan:
    """A workload plan of an example (by file name) or a spec file."""
    path = EXAMPLES / spec if isinstance(spec, str) else spec
    platform = platform_plan(stack, *platform_overrides)
    return plan_workload(stack, str(path), project_dir=REPO, platform=platform)


def variant(tmp_path: Path, example: str, **changes: Any) -> Path:
    """``example`` with top-level keys replaced (``routing={...}``)."""
    data = yaml.safe_load((EXAMPLES / example).read_text())
    data.update(changes)
    path = tmp_path / example
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------- the namespace


def test_a_pod_started_by_hand_in_the_workload_namespace_sends_and_receives_nothing() -> None:
    c = cluster(plan("gemma-3-1b-l4.yaml"))
    assert not {f for f in flows_of(c, "stranger")}


def test_the_platform_denies_everything_in_the_workload_namespace() -> None:
    policies = network_policies(kubernetes_objects(platform_plan("dev")))
    (deny,) = [p for p in policies if p["metadata"]["namespace"] == NAMESPACE]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


# --------------------------------------------------------------------------- online


def test_an_online_server_takes_the_gateway_and_the_scraper_and_reaches_google() -> None:
    c = cluster(plan("gemma-3-1b-l4.yaml"))
    server = "gemma-3-1b"
    assert flows_of(c, server) == expected(server, {"8000/TCP": {*GATEWAY, "collector"}}, GOOGLE)


def test_autopilot_servers_are_scraped_from_gke_gmp_system() -> None:
    c = cluster(
        plan("gemma-3-1b-l4.yaml", "dev", "cluster.mode=autopilot"),
        "dev",
        "cluster.mode=autopilot",
    )
    scraped = ("collector", "gemma-3-1b", "8000/TCP")
    assert scraped not in flows_of(c, "gemma-3-1b")  # no collector in gmp-system there
    c.endpoints = [
        Endpoint(e.name, e.ip, "gke-gmp-system", e.labels) if e.name == "collector" else e
        for e in c.endpoints
    ]
    assert scraped in flows_of(c, "gemma-3-1b")


def test_an_inference_pool_adds_the_picker_and_only_it_reaches_the_api_server(
    tmp_path: Path,
) -> None:
    spec = variant(tmp_path, "gemma-3-1b-l4.yaml", routing={"mode": "inference-pool"})
    c = cluster(plan(spec))
    server, epp = "gemma-3-1b", "gemma-3-1b-epp"
    assert flows_of(c, server) - flows_of(c, epp) == expected(
        server, {"8000/TCP": {*GATEWAY, "collector"}}, GOOGLE
    )
    api = {"api-server": {"443/TCP"}, "node": {"443/TCP"}}
    assert flows_of(c, epp) == expected(
        epp,
        {"9002/TCP": GATEWAY, "9003/TCP": GATEWAY, "9090/TCP": {"collector"}},
        {**DNS, **api, server: {"8000/TCP"}},
    )


def test_a_multi_host_group_talks_inside_itself_on_every_port(tmp_path: Path) -> None:
    spec = tmp_path / "big.yaml"
    spec.write_text(
        "name: big\nkind: online\n"
        "model: {id: meta-llama/Llama-3.3-70B-Instruct, preset: llama-3.3-70b}\n"
        "accelerator: l4\nconcurrency: 16\n"
        "scaling: {minReplicas: 1, maxReplicas: 3, metric: queue-depth}\n"
    )
    accelerators = (
        'inference.accelerators=["g2-standard-8","g2-standard-24","g2-standard-48",'
        '"g2-standard-96","ct5lp-hightpu-4t"]'
    )
    p = plan(spec, "dev", accelerators)
    c = cluster(p, "dev", accelerators)
    leader, worker = "big/leader", "big/worker"
    every = {f"{port}/{proto}" for port, proto in PROBES}
    group = expected(leader, {port: {worker} for port in every}, {worker: every})
    outside = expected(leader, {"8000/TCP": {*GATEWAY, "collector"}}, GOOGLE)
    outside |= expected(worker, {"8000/TCP": {*GATEWAY, "collector"}}, GOOGLE)
    assert flows_of(c, leader, worker) == group | outside


# --------------------------------------------------------------------------- streaming


def test_streaming_workers_alone_call_their_server_and_nothing_calls_them() -> None:
    c = cluster(plan("streaming-gemma-l4.yaml"))
    server, worker = "gemma-stream", "gemma-stream-worker"
    assert flows_of(c, worker) == expected(
        worker, {"9090/TCP": {"collector"}}, {**GOOGLE, server: {"8000/TCP"}}
    )
    # Not exposed: the gateway does not reach the server, only its workers and the scraper.
    assert flows_of(c, server) == expected(server, {"8000/TCP": {worker, "collector"}}, GOOGLE)


# --------------------------------------------------------------------------- jobs


def test_a_batch_pod_is_scraped_and_reaches_its_buckets_and_its_download_nothing_else() -> None:
    c = cluster(plan("batch-llama-8b-l4.yaml"))
    job, download = "llama-8b-batch", "llama-8b-batch-download"
    assert flows_of(c, job) == expected(job, {"8000/TCP": {"collector"}}, GOOGLE)
    assert flows_of(c, download) == expected(download, None, GOOGLE)


def test_a_download_pod_is_not_selected_by_its_servers_service_or_policy(
    tmp_path: Path,
) -> None:
    """A re-download runs while the old servers still serve: their Service must not send
    requests to the download pod, nor their policy admit the gateway to it."""
    model = {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b", "download": True}
    p = plan(variant(tmp_path, "gemma-3-1b-l4.yaml", model=model))
    objects = kubernetes_objects(p)
    (job,) = [o for o in objects if o["kind"] == "Job"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    selectors: list[dict[str, Any]] = [
        o["spec"]["selector"] for o in objects if o["kind"] == "Service"
    ]
    selectors += [
        o["spec"]["podSelector"]["matchLabels"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "gemma-3-1b"
    ]
    assert selectors
    for selector in selectors:
        assert not all(labels.get(k) == v for k, v in selector.items()), selector


# --------------------------------------------------------------------------- comfyui


def test_comfyui_takes_only_the_gateway() -> None:
    c = cluster(plan("comfyui-l4.yaml"))
    assert flows_of(c, "comfyui") == expected("comfyui", {"8188/TCP": GATEWAY}, GOOGLE)


@pytest.mark.parametrize(
    "example", ["gemma-3-1b-l4.yaml", "streaming-gemma-l4.yaml", "batch-llama-8b-l4.yaml"]
)
def test_every_rendered_pod_is_selected_by_a_policy_of_its_own(example: str) -> None:
    objects = kubernetes_objects(plan(example))
    pods = rendered_pods(objects, str(NET.pod_cidr))
    c = Cluster(network_policies(objects), pods)
    for pod in pods:
        own = [
            p
            for p in c.policies
            if all(
                pod.labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items()
            )
        ]
        assert len(own) == 1, (pod.name, [p["metadata"]["name"] for p in own])
        assert own[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_a_platform_stack_without_network_ranges_is_upgraded_first() -> None:
    """networkRanges is required: without it no workload could be isolated."""
    outputs = dict(platform_plan("dev").outputs)
    del outputs["networkRanges"]

    async def value_of(key: str) -> Any:
        return outputs.get(key)

    with pytest.raises(SpecError) as err:
        asyncio.run(PlatformOutputs.read(value_of, stack="o/gke-inference/dev", environment="dev"))
    assert "missing networkRanges" in str(err.value.problems[0])
    assert "deploy (or upgrade) the platform stack of environment 'dev' first" in str(
        err.value.problems[0]
    )

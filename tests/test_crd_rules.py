"""CEL rules of the custom resource schemas (``x-kubernetes-validations``), evaluated offline.

Each known example is a manifest the JSON Schema accepts but the upstream
CRD's CEL rule rejects; validate_manifests must report exactly that rule, with
the upstream message, at the rule's node. Every rule in every schema file must
compile with cel-python, and the shipped plans must still validate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from gke_inference.offline.manifests import ManifestProblem, kubernetes_objects, validate_manifests
from gke_inference.offline.manifests import cel_rules as cel
from gke_inference.offline.manifests.cel_rules import (
    TRANSITION_RULE,
    CelRuleError,
    SchemaRules,
    compile_rule,
)
from gke_inference.offline.manifests.crd_schemas import repo_crd_schemas
from gke_inference.offline.manifests.validation import crd_rule_errors
from gke_inference.offline.recording import Plan
from tests.test_manifests import NS, POD_TEMPLATE, WIDGET_CRD, custom, problems_of, record
from tests.test_workload_components import plan as workload_plan

GATEWAY = "gateway.networking.k8s.io/v1"
CLASS = "gke-l7-rilb"


def problems(api_version: str, kind: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
    found = problems_of(custom("x", api_version, kind, spec))
    assert all(p.kind == kind and p.name == "x" and p.namespace == NS for p in found), found
    return [(p.path, p.message) for p in found]


def gateway(*listeners: dict[str, Any], **spec: Any) -> list[tuple[str, str]]:
    return problems(
        GATEWAY, "Gateway", {"gatewayClassName": CLASS, "listeners": list(listeners), **spec}
    )


def http(name: str = "http", port: int = 80, **more: Any) -> dict[str, Any]:
    return {"name": name, "protocol": "HTTP", "port": port, **more}


# -- the known examples ------------------------------------------------------

HEALTH_CHECK: dict[str, Any] = {
    "targetRef": {"group": "", "kind": "Service", "name": "vllm"},
    "default": {
        "checkIntervalSec": 5,
        "timeoutSec": 5,
        "config": {
            "type": "HTTP",
            "httpHealthCheck": {
                "portSpecification": "USE_FIXED_PORT",
                "port": 8000,
                "requestPath": "/health",
            },
        },
    },
}


def health_check(default: dict[str, Any]) -> list[tuple[str, str]]:
    spec = {**HEALTH_CHECK, "default": {**HEALTH_CHECK["default"], **default}}
    return problems("networking.gke.io/v1", "HealthCheckPolicy", spec)


def test_a_health_check_timeout_may_not_exceed_its_interval() -> None:
    assert health_check({}) == []
    assert health_check({"checkIntervalSec": 5, "timeoutSec": 10}) == [
        ("spec.default", "timeOutSec cannot exceed checkIntervalSec")
    ]
    # Against GKE's default of 5 seconds when one of them is unset.
    unset_interval = {**HEALTH_CHECK["default"], "timeoutSec": 6}
    del unset_interval["checkIntervalSec"]
    spec = {**HEALTH_CHECK, "default": unset_interval}
    assert problems("networking.gke.io/v1", "HealthCheckPolicy", spec) == [
        (
            "spec.default",
            "when checkIntervalSec is unspecified, timeOutSec cannot exceed 5, "
            "which is the default value of checkIntervalSec",
        )
    ]


def test_a_health_check_block_names_its_port_specification() -> None:
    # GKE's rules read portSpecification without has(): leaving it out is an
    # evaluation error on the API server too, and a bare port breaks the
    # USE_SERVING_PORT rule.
    config = {"type": "HTTP", "httpHealthCheck": {"port": 8000, "requestPath": "/health"}}
    found = health_check({"config": config})
    at = "spec.default.config.httpHealthCheck"
    assert found == [
        (
            at,
            "no such key: portSpecification evaluating rule: for portSpecification being "
            "USE_FIXED_PORT, port must be set and portName must be unset",
        ),
        (
            at,
            "no such key: portSpecification evaluating rule: for portSpecification being "
            "USE_NAMED_PORT, port must be unset and portName must be set",
        ),
        (
            at,
            "port and portName must be unset for portSpecification being USE_SERVING_PORT "
            "(which is the default)",
        ),
    ]
    named = {
        "type": "HTTP",
        "httpHealthCheck": {"portSpecification": "USE_NAMED_PORT", "port": 8000},
    }
    assert health_check({"config": named}) == [
        (
            at,
            "for portSpecification being USE_NAMED_PORT, port must be unset and portName must be set",
        )
    ]


POD_MONITORING: dict[str, Any] = {
    "selector": {"matchLabels": {"app": "vllm"}},
    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
}


def pod_monitoring(**endpoint: Any) -> list[tuple[str, str]]:
    spec = {**POD_MONITORING, "endpoints": [{**POD_MONITORING["endpoints"][0], **endpoint}]}
    return problems("monitoring.googleapis.com/v1", "PodMonitoring", spec)


def recording_rules(**rule: Any) -> list[tuple[str, str]]:
    spec = {"groups": [{"name": "g", "rules": [{"expr": "vector(1)", **rule}]}]}
    return problems("monitoring.googleapis.com/v1", "Rules", spec)


def test_a_rule_records_or_alerts_exactly_once() -> None:
    assert recording_rules(record="pod:x:p90") == []
    once = "Must set exactly one of Record or Alert"
    assert recording_rules() == [("spec.groups[0].rules[0]", once)]
    assert recording_rules(record="pod:x", alert="X") == [("spec.groups[0].rules[0]", once)]
    assert recording_rules(record="pod:x", annotations={"a": "b"}) == [
        ("spec.groups[0].rules[0]", "Annotations are only allowed for alerting rules")
    ]


def test_a_rule_may_not_set_the_labels_the_operator_scopes_it_with() -> None:
    (problem,) = recording_rules(record="pod:x", labels={"namespace": "other"})
    assert problem[0].startswith("spec.groups[0].rules[0].labels")


def test_a_scrape_timeout_may_not_exceed_its_interval_as_durations() -> None:
    # "1m" sorts before "30s" as a string; as durations it is longer.
    assert pod_monitoring(timeout="1m") == [
        ("spec.endpoints[0]", "scrape timeout (60s) must not be greater than scrape interval (30s)")
    ]
    assert pod_monitoring(interval="1m", timeout="60s") == []
    assert pod_monitoring(interval="1m30s", timeout="45s") == []
    assert pod_monitoring(interval="1d", timeout="25h") == [
        (
            "spec.endpoints[0]",
            "scrape timeout (90000s) must not be greater than scrape interval (86400s)",
        )
    ]


def test_other_pod_monitoring_rules_of_the_crd() -> None:
    at = "spec.endpoints[0]"
    assert pod_monitoring(metricRelabeling=[{"action": "labeldrop"}]) == [
        (
            f"{at}.metricRelabeling[0]",
            "failed rule: !has(self.action) ||  self.action != 'labeldrop' || has(self.regex)",
        )
    ]
    assert pod_monitoring(proxyUrl="http://user@proxy:3128") == [
        (f"{at}.proxyUrl", "failed rule: isURL(self) && !self.matches('@')")
    ]
    assert pod_monitoring(proxyUrl="proxy.internal:3128x/") == []  # an opaque URI parses
    assert pod_monitoring(proxyUrl="relative/path") == [
        (f"{at}.proxyUrl", "failed rule: isURL(self) && !self.matches('@')")
    ]
    secret = {"secret": {"name": "client", "key": "tls.crt"}}
    assert pod_monitoring(tls={"cert": secret}) == [
        (
            f"{at}.tls",
            "client cert and client key must be provided together, when either is provided",
        )
    ]
    two_auths = {"authorization": {"type": "Bearer"}, "basicAuth": {"username": "u"}}
    assert [path for path, _ in pod_monitoring(**two_auths)] == [at]


def test_gateway_listener_names_are_unique() -> None:
    assert gateway(http(), http(port=8080)) == [
        ("spec.listeners", "Listener name must be unique within the Gateway")
    ]
    assert gateway(http(), http("http-alt", 8080)) == []


def test_an_https_listener_needs_tls() -> None:
    https = {"name": "https", "protocol": "HTTPS", "port": 443}
    assert gateway(https) == [
        ("spec.listeners[0]", "tls must be specified for protocols ['HTTPS', 'TLS']")
    ]
    cert = {"mode": "Terminate", "options": {"networking.gke.io/pre-shared-certs": "models"}}
    assert gateway({**https, "tls": cert}) == []


@pytest.mark.parametrize(
    ("listeners", "spec", "expected"),
    [
        (
            [{"name": "tcp", "protocol": "TCP", "port": 5432, "hostname": "db.example.com"}],
            {},
            [("spec.listeners", "hostname must not be specified for protocols ['TCP', 'UDP']")],
        ),
        (
            [http("a"), http("b")],
            {},
            [
                (
                    "spec.listeners",
                    "Combination of port, protocol and hostname must be unique for each listener",
                )
            ],
        ),
        ([http("a", hostname="a.example.com"), http("b", hostname="b.example.com")], {}, []),
        (
            # tls.mode defaults to Terminate
            [
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "tls": {"certificateRefs": [], "options": {}},
                }
            ],
            {},
            [
                (
                    "spec.listeners[0].tls",
                    "certificateRefs or options must be specified when mode is Terminate",
                )
            ],
        ),
        (
            # addresses[].type defaults to IPAddress
            [http()],
            {"addresses": [{"value": "10.0.0.7"}, {"value": "10.0.0.7"}]},
            [("spec.addresses", "IPAddress values must be unique")],
        ),
        (
            [http()],
            {"addresses": [{"type": "Hostname", "value": "Not_A_Host"}]},
            [
                (
                    "spec.addresses[0]",
                    "Hostname value must be empty or contain only valid characters (matching "
                    "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$)",
                )
            ],
        ),
        (
            [http()],
            {"infrastructure": {"labels": {"-team": "ml"}}},
            [
                (
                    "spec.infrastructure.labels",
                    "Label keys must be in the form of an optional DNS subdomain prefix followed "
                    "by a required name segment of up to 63 characters.",
                )
            ],
        ),
    ],
    ids=[
        "tcp-hostname",
        "same-port-protocol-hostname",
        "distinct-hostnames",
        "terminate-without-certificates",
        "duplicate-ip-addresses",
        "bad-hostname-address",
        "bad-infrastructure-label",
    ],
)
def test_the_other_listener_and_gateway_rules_of_the_standard_channel(
    listeners: list[dict[str, Any]], spec: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert gateway(*listeners, **spec) == expected


def test_terminate_without_certificates_or_options_fails_to_evaluate_like_the_api_server() -> None:
    found = gateway(
        {"name": "https", "protocol": "HTTPS", "port": 443, "tls": {"mode": "Terminate"}}
    )
    assert [path for path, _ in found] == ["spec.listeners[0].tls"]
    assert found[0][1].startswith("no such key: ")
    assert found[0][1].endswith(
        " evaluating rule: certificateRefs or options must be specified when mode is Terminate"
    )


ROUTE_RULE: dict[str, Any] = {
    "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "p"}]
}


def route(*rules: dict[str, Any], **spec: Any) -> list[tuple[str, str]]:
    full = {"parentRefs": [{"name": "inference-gateway"}], "rules": list(rules), **spec}
    return problems(GATEWAY, "HTTPRoute", full)


def header_filter() -> dict[str, Any]:
    return {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]},
    }


@pytest.mark.parametrize(
    ("rules", "spec", "expected"),
    [
        ([ROUTE_RULE], {}, []),
        (
            # kind defaults to Service, group to ""
            [{"backendRefs": [{"name": "vllm"}]}],
            {},
            [("spec.rules[0].backendRefs[0]", "Must have port for Service reference")],
        ),
        (
            # path.type defaults to PathPrefix
            [{**ROUTE_RULE, "matches": [{"path": {"value": "/v1//chat"}}]}],
            {},
            [
                (
                    "spec.rules[0].matches[0].path",
                    "must not contain '//' when type one of ['Exact', 'PathPrefix']",
                )
            ],
        ),
        (
            [{**ROUTE_RULE, "timeouts": {"request": "30s", "backendRequest": "1m"}}],
            {},
            [
                (
                    "spec.rules[0].timeouts",
                    "backendRequest timeout cannot be longer than request timeout",
                )
            ],
        ),
        ([{**ROUTE_RULE, "timeouts": {"request": "0s", "backendRequest": "1m"}}], {}, []),
        (
            [ROUTE_RULE],
            {"parentRefs": [{"name": "gw"}, {"name": "gw"}]},
            [
                (
                    "spec.parentRefs",
                    "sectionName must be unique when parentRefs includes 2 or more references "
                    "to the same parent",
                )
            ],
        ),
        (
            [ROUTE_RULE],
            {"parentRefs": [{"name": "gw"}, {"name": "gw", "sectionName": "https"}]},
            [
                (
                    "spec.parentRefs",
                    "sectionName must be specified when parentRefs includes 2 or more references "
                    "to the same parent",
                )
            ],
        ),
        (
            [{**ROUTE_RULE, "filters": [header_filter(), header_filter()]}],
            {},
            [("spec.rules[0].filters", "RequestHeaderModifier filter cannot be repeated")],
        ),
        (
            [
                {
                    **ROUTE_RULE,
                    "filters": [
                        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
                    ],
                }
            ],
            {},
            [
                (
                    "spec.rules[0]",
                    "RequestRedirect filter must not be used together with backendRefs",
                )
            ],
        ),
        (
            # fraction.denominator defaults to 100
            [
                {
                    **ROUTE_RULE,
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "shadow", "port": 8000},
                                "fraction": {"numerator": 150},
                            },
                        }
                    ],
                }
            ],
            {},
            [
                (
                    "spec.rules[0].filters[0].requestMirror.fraction",
                    "numerator must be less than or equal to denominator",
                )
            ],
        ),
        (
            [
                {
                    **ROUTE_RULE,
                    "filters": [
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/v2"}
                            },
                        }
                    ],
                }
            ],
            {},
            [
                (
                    "spec.rules[0].filters[0].urlRewrite.path",
                    "replaceFullPath must be specified when type is set to 'ReplaceFullPath'",
                ),
                (
                    "spec.rules[0].filters[0].urlRewrite.path",
                    "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set",
                ),
            ],
        ),
    ],
    ids=[
        "valid",
        "service-without-port",
        "double-slash",
        "backend-timeout-longer",
        "no-request-timeout",
        "same-parent-twice",
        "section-name-on-one-only",
        "repeated-filter",
        "redirect-with-backends",
        "mirror-fraction",
        "rewrite-path-type",
    ],
)
def test_http_route_rules_of_the_standard_channel(
    rules: list[dict[str, Any]], spec: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert route(*rules, **spec) == expected


def test_jobset_claim_templates_have_no_namespace() -> None:
    template = {"spec": {"template": {"spec": {**POD_TEMPLATE["spec"], "restartPolicy": "Never"}}}}
    claim = {"metadata": {"name": "scratch"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    spec: dict[str, Any] = {
        "replicatedJobs": [{"name": "w", "replicas": 1, "template": template}],
        "volumeClaimPolicies": [{"templates": [claim]}],
    }
    assert problems("jobset.x-k8s.io/v1alpha2", "JobSet", spec) == []
    spec["volumeClaimPolicies"] = [
        {"templates": [{**claim, "metadata": {"name": "scratch", "namespace": "other"}}]}
    ]
    assert problems("jobset.x-k8s.io/v1alpha2", "JobSet", spec) == [
        ("spec.volumeClaimPolicies[0]", "namespace cannot be set for VolumeClaimPolicies templates")
    ]


def test_rules_the_json_schema_already_enforces_agree_with_it() -> None:
    """Restated rules that the JSON Schema blocks first still evaluate as upstream."""
    cases = [
        (
            "inference.networking.k8s.io",
            "v1",
            "InferencePool",
            "spec.endpointPickerRef",
            {"name": "epp"},  # kind defaults to Service
            "port is required when kind is 'Service' or unspecified (defaults to 'Service')",
        ),
        (
            "inference.networking.k8s.io",
            "v1",
            "InferencePool",
            "spec.targetPorts",
            [{"number": 8000}, {"number": 8000}],
            "port number must be unique",
        ),
        (
            "gateway.networking.k8s.io",
            "v1",
            "Gateway",
            "spec.listeners",
            [http(tls={"mode": "Terminate", "options": {"a": "b"}})],
            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
        ),
        (
            "gateway.networking.k8s.io",
            "v1",
            "Gateway",
            "spec.listeners",
            [{"name": "h", "protocol": "HTTPS", "port": 443, "tls": {"mode": "Passthrough"}}],
            "tls mode must be Terminate for protocol HTTPS",
        ),
        (
            "networking.gke.io",
            "v1",
            "HealthCheckPolicy",
            "spec.default.config",
            {"type": "GRPC", "httpHealthCheck": {"portSpecification": "USE_SERVING_PORT"}},
            "grpcHealthCheck must be specified for type GRPC",
        ),
        (
            "jobset.x-k8s.io",
            "v1alpha2",
            "JobSet",
            "spec",
            {
                "startupPolicy": {"startupPolicyOrder": "InOrder"},
                "replicatedJobs": [{"name": "a", "dependsOn": [{"name": "b", "status": "Ready"}]}],
            },
            "StartupPolicy and DependsOn APIs are mutually exclusive",
        ),
        (
            "monitoring.googleapis.com",
            "v1",
            "PodMonitoring",
            "spec.targetLabels.fromPod[0].to",
            "cluster",
            'cannot relabel onto protected label "cluster"',
        ),
    ]
    for group, version, kind, path, value, message in cases:
        schema = repo_crd_schemas()[(group, version, kind)].schema
        assert at_path(schema, path, value) == [(path, message)], (kind, path)


def at_path(schema: dict[str, Any], path: str, value: Any) -> list[tuple[str, str]]:
    """The rule problems of ``value`` placed at ``path`` (dots; ``[0]`` for one list item)."""
    obj: Any = value
    for part in reversed(path.split(".")):
        name, _, index = part.partition("[")
        obj = {name: [obj] if index else obj}
    rules = SchemaRules(schema)
    return [(render(parts), message) for parts, message in rules.check(obj)]


def render(parts: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def test_transition_rules_are_skipped_with_their_reason() -> None:
    compiled = compile_rule({"rule": "self == oldSelf", "message": "Value is immutable"})
    assert compiled.skip == TRANSITION_RULE
    spec = {
        "provisioningClassName": "queued-provisioning.gke.io",
        "podSets": [{"count": 1, "podTemplateRef": {"name": "eval"}}],
    }
    assert problems("autoscaling.x-k8s.io/v1", "ProvisioningRequest", spec) == []


def test_schema_errors_come_first_and_alone() -> None:
    # timeoutSec 301 is over the schema's maximum; the CEL rules (which would
    # also fail) do not run on an object its schema rejects.
    found = health_check({"checkIntervalSec": 5, "timeoutSec": 301})
    assert [path for path, _ in found] == ["spec.default.timeoutSec"]


def test_problems_render_like_schema_errors() -> None:
    found = problems_of(
        custom(
            "g",
            GATEWAY,
            "Gateway",
            {"gatewayClassName": CLASS, "listeners": [http(), http(port=81)]},
        )
    )
    assert [p.render() for p in found] == [
        "  - Gateway inference/g spec.listeners: Listener name must be unique within the Gateway"
    ]
    assert found == [
        ManifestProblem(
            kind="Gateway",
            name="g",
            path="spec.listeners",
            message="Listener name must be unique within the Gateway",
            namespace=NS,
            api_version=GATEWAY,
        )
    ]


# -- every rule compiles -----------------------------------------------------


def test_every_rule_in_every_schema_file_compiles_with_cel_python() -> None:
    errors = crd_rule_errors()
    assert set(errors) == {crd.file for crd in repo_crd_schemas().values()}
    assert {name: found for name, found in errors.items() if found} == {}
    counts = {
        crd.file: sum(1 for _ in cel.rules_in(crd.schema)) for crd in repo_crd_schemas().values()
    }
    assert counts["gateway.networking.k8s.io_v1_Gateway.json"] == 14
    assert counts["gateway.networking.k8s.io_v1_HTTPRoute.json"] == 45
    assert counts["networking.gke.io_v1_HealthCheckPolicy.json"] == 17
    assert counts["monitoring.googleapis.com_v1_PodMonitoring.json"] == 9
    assert counts["monitoring.googleapis.com_v1_Rules.json"] == 2
    assert counts["leaderworkerset.x-k8s.io_v1_LeaderWorkerSet.json"] == 0


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("self.size( > 1", "syntax error"),
        ("quantity(self).isGreaterThan(quantity('1'))", "unknown function quantity()"),
        ("self.checkIntervalSecs > 1", "undefined field 'checkIntervalSecs'"),
        ("slef.port > 1", "undeclared reference to 'slef'"),
        ("has(self)", "has() takes a field selection"),
    ],
)
def test_a_rule_that_does_not_compile_is_an_error(rule: str, error: str) -> None:
    schema = {
        "type": "object",
        "properties": {"port": {"x-kubernetes-validations": [{"rule": rule}]}},
    }
    (found,) = SchemaRules(schema).compile_errors()
    assert found.startswith("#/properties/port/x-kubernetes-validations/0: ")
    assert error in found
    with pytest.raises(CelRuleError, match="unknown keys"):
        compile_rule({"rule": "true", "messsage": "typo"})


def test_a_rule_where_it_never_runs_is_an_error() -> None:
    schema = {"anyOf": [{"x-kubernetes-validations": [{"rule": "true"}]}]}
    (found,) = SchemaRules(schema).compile_errors()
    assert "never evaluated" in found


def widget_crd(rule: str) -> dict[str, Any]:
    crd = {**WIDGET_CRD, "versions": [dict(WIDGET_CRD["versions"][0])]}
    spec_schema = {
        "type": "object",
        "properties": {"size": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": rule, "message": "size at most 10"}],
    }
    crd["versions"][0]["schema"] = {
        "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}
    }
    return crd


def widget_problems(rule: str, size: int) -> list[tuple[str, str]]:
    def crd(opts: pulumi.ResourceOptions) -> None:
        k8s.apiextensions.v1.CustomResourceDefinition(
            "widgets", metadata={"name": "widgets.example.com"}, spec=widget_crd(rule), opts=opts
        )

    found = validate_manifests(
        kubernetes_objects(record(crd, custom("w", "example.com/v1", "Widget", {"size": size})))
    )
    return [(p.path, p.message) for p in found]


def test_rules_of_a_crd_in_the_same_plan_are_checked_and_never_silently_passed() -> None:
    assert widget_problems("self.size <= 10", 3) == []
    assert widget_problems("self.size <= 10", 11) == [("spec", "size at most 10")]
    ((path, message),) = widget_problems("quantity('1').isInteger()", 3)
    assert path == "spec"
    assert message.startswith("cannot check CEL rule \"quantity('1').isInteger()\" offline: ")


# -- the shipped plans -------------------------------------------------------


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Rule texts evaluated while the test runs."""
    seen: Counter[str] = Counter()
    compiled = SchemaRules.compiled

    def counting(self: SchemaRules, spec: Any) -> Any:
        seen[str(spec.get("rule"))] += 1
        return compiled(self, spec)

    monkeypatch.setattr(SchemaRules, "compiled", counting)
    yield seen


def test_the_shipped_platform_plans_pass_their_rules(
    any_plan: Plan, evaluated: Counter[str]
) -> None:
    assert validate_manifests(kubernetes_objects(any_plan)) == []
    assert evaluated["self.all(l1, self.exists_one(l2, l1.name == l2.name))"] >= 1
    assert evaluated["!has(self.timeout) || self.timeout <= self.interval"] >= 1


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_workload_plan_passes_its_rules(stack: str, evaluated: Counter[str]) -> None:
    objects = kubernetes_objects(workload_plan("gemma-3-1b-l4.yaml", stack))
    assert {"HTTPRoute", "HealthCheckPolicy", "GCPBackendPolicy"} <= {o["kind"] for o in objects}
    assert validate_manifests(objects) == []
    assert (
        evaluated["(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true"] >= 1
    )
    assert (
        evaluated[
            "has(self.checkIntervalSec) && has(self.timeoutSec) ? self.checkIntervalSec >= self.timeoutSec : true"
        ]
        == 1
    )


# -- evaluation semantics ----------------------------------------------------


X_LIST = {
    "properties": {
        "x": {"properties": {"y": {}}},
        "l": {"type": "array", "items": {"type": "object", "properties": {"a": {}}}},
    }
}


def evaluate(rule: str, value: Any, schema: dict[str, Any]) -> list[str]:
    """The messages of one rule (message "broken") on ``value``, whose schema is ``schema``."""
    node = {**schema, "x-kubernetes-validations": [{"rule": rule, "message": "broken"}]}
    return messages(node, value)


def messages(node: dict[str, Any], value: Any) -> list[str]:
    wrapper = {"type": "object", "properties": {"v": node}}
    return [message for _, message in SchemaRules(wrapper).check({"v": value})]


@pytest.mark.parametrize(
    ("rule", "value", "schema", "expected"),
    [
        # an error in a condition is that error (celpy: "no matching overload")
        ("self.x == 1 ? true : false", {}, X_LIST, ["no such key: x evaluating rule: broken"]),
        # has(e.f) is an error when e is
        ("has(self.x.y)", {}, X_LIST, ["no such key: x evaluating rule: broken"]),
        ("!has(self.x) || self.x > 0", {}, X_LIST, []),
        # errors in exists_one / filter propagate instead of counting as true
        (
            "self.l.exists_one(i, i.a == 1)",
            {"l": [{"a": 1}, {}]},
            X_LIST,
            ["no such key: a evaluating rule: broken"],
        ),
        (
            "self.l.filter(i, i.a == 1).size() == 1",
            {"l": [{"a": 1}, {}]},
            X_LIST,
            ["no such key: a evaluating rule: broken"],
        ),
        # a false predicate wins over an error in all(), a true one in exists()
        ("self.l.all(i, i.a == 1)", {"l": [{"a": 2}, {}]}, X_LIST, ["broken"]),
        ("self.l.exists(i, i.a == 1)", {"l": [{"a": 1}, {}]}, X_LIST, []),
        # heterogeneous equality and numeric ordering across types
        ("self != 0", "metrics", None, []),
        ("self == 'x'", 1, None, ["broken"]),
        ("self > 1.5 && self < 3u", 2, None, []),
        # reserved words as field names, escaped or not
        (
            "self.__namespace__ == 'a' && self.namespace == 'a'",
            {"namespace": "a"},
            {"properties": {"namespace": {}}},
            [],
        ),
        # format: duration values are durations (strfmt: Go durations, or days/weeks)
        (
            "self.d > duration('23h')",
            {"d": "1d"},
            {"properties": {"d": {"type": "string", "format": "duration"}}},
            [],
        ),
        (
            "self.d == duration('90s')",
            {"d": "1m30s"},
            {"properties": {"d": {"type": "string", "format": "duration"}}},
            [],
        ),
        (
            "self.d > duration('1s')",
            {"d": "soon"},
            {"properties": {"d": {"type": "string", "format": "duration"}}},
            ["Invalid duration soon evaluating rule: broken"],
        ),
        # duration() itself takes Go durations only
        (
            "duration(self) > duration('1s')",
            "1d",
            None,
            [
                "type conversion error from 'string' to 'google.protobuf.Duration': 1d evaluating rule: broken"
            ],
        ),
        # type: number values are doubles
        ("self == 2.0", 2, {"type": "number"}, []),
        # defaults are applied before the rules read them
        (
            "self.kind == 'Service'",
            {},
            {"properties": {"kind": {"type": "string", "default": "Service"}}},
            [],
        ),
        # Kubernetes string, list, regex and URL libraries
        ("self.split('/')[0].size() < 5 && 'a,b'.split(',').join('-') == 'a-b'", "ab/c", None, []),
        (
            "self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC' && ' x '.trim() == 'x'",
            "aBc",
            None,
            [],
        ),
        (
            "self.indexOf('b') == 1 && self.lastIndexOf('b') == 3 && self.substring(1, 3) == 'bc'",
            "abcb",
            None,
            [],
        ),
        (
            "self.replace('-', '_') == 'a_b' && self.charAt(1) == '-' && self.reverse() == 'b-a'",
            "a-b",
            None,
            [],
        ),
        (
            "self.isSorted() && self.sum() == 6 && self.min() == 1 && self.max() == 3 && self.indexOf(2) == 1",
            [1, 2, 3],
            None,
            [],
        ),
        ("self.find('[0-9]+') == '12' && self.findAll('[a-z]') == ['a', 'b']", "a12b", None, []),
        ("isURL(self)", "https://example.com:8443/p?q=1", None, []),
        ("isURL(self)", "/absolute/path", None, []),
        ("isURL(self)", "https://a:b:c/", None, ["broken"]),
        ("isURL(self)", "../relative", None, ["broken"]),
        (
            "'%s, %d, %s'.format([duration('1.5s'), 3, ['a', 1]]) == '1.5s, 3, [\"a\", 1]'",
            0,
            None,
            [],
        ),
    ],
)
def test_the_evaluator_follows_the_api_server(
    rule: str, value: Any, schema: dict[str, Any] | None, expected: list[str]
) -> None:
    assert evaluate(rule, value, schema or {}) == expected


def test_a_rule_without_a_message_reports_the_rule_and_a_message_expression_wins() -> None:
    assert messages({"x-kubernetes-validations": [{"rule": "self > 1"}]}, 0) == [
        "failed rule: self > 1"
    ]
    rule = {"rule": "self > 1", "message": "static", "messageExpression": "'got %d'.format([self])"}
    assert messages({"x-kubernetes-validations": [rule]}, 0) == ["got 0"]
    # a messageExpression that fails falls back to the message, as on the API server
    rule = {"rule": "self > 1", "message": "static", "messageExpression": "string(1 / self)"}
    assert messages({"x-kubernetes-validations": [rule]}, 0) == ["static"]

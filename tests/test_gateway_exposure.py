"""External exposure done right: the HTTPS listener's tls carries the pre-shared
certificate, and external routes sit behind IAP and/or Cloud Armor."""

from __future__ import annotations

from typing import Any

import pytest

from gke_inference.core.errors import SettingsError
from gke_inference.inference.gateway import BackendProtection
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_platform
from tests.support.examples import REPO
from tests.test_manifests import custom, problems_of
from tests.test_workload_components import plan

GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"
BACKEND_POLICY = "kubernetes:networking.gke.io/v1:GCPBackendPolicy"
EXTERNAL = ("inference.gateway.exposure=external", "inference.gateway.certificate=models-cert")


def test_the_https_listener_terminates_tls_with_the_pre_shared_certificate() -> None:
    platform = plan_platform("dev", list(EXTERNAL), project_dir=REPO)
    gateway = platform.one(GATEWAY).inputs
    (listener,) = gateway["spec"]["listeners"]
    assert listener["protocol"] == "HTTPS" and listener["port"] == 443
    assert listener["tls"] == {
        "mode": "Terminate",
        "options": {"networking.gke.io/pre-shared-certs": "models-cert"},
    }
    assert "annotations" not in gateway["metadata"]  # the certificate is not an annotation
    assert validate_manifests(kubernetes_objects(platform)) == []
    exported = platform.outputs["gatewayBackendProtection"]
    assert exported == {"iap": "true"}


@pytest.mark.parametrize(
    ("listener", "path"),
    [
        ({"name": "https", "protocol": "HTTPS", "port": 443}, "spec.listeners[0]"),
        (
            {"name": "http", "protocol": "HTTP", "port": 80, "tls": {"mode": "Terminate"}},
            "spec.listeners[0]",
        ),
        (
            {"name": "https", "protocol": "HTTPS", "port": 443, "tls": {"mode": "Passthrough"}},
            "spec.listeners[0].tls.mode",
        ),
    ],
    ids=["https-without-tls", "http-with-tls", "https-passthrough"],
)
def test_listener_tls_rules_of_the_upstream_crd(listener: dict[str, Any], path: str) -> None:
    spec = {"gatewayClassName": "gke-l7-global-external-managed", "listeners": [listener]}
    problems = problems_of(custom("g", "gateway.networking.k8s.io/v1", "Gateway", spec))
    assert problems and all(p.path.startswith(path) for p in problems), problems


def test_an_external_gateway_needs_iap_or_cloud_armor() -> None:
    with pytest.raises(SettingsError) as info:
        plan_platform("dev", [*EXTERNAL, "inference.gateway.iap=false"], project_dir=REPO)
    assert "must be behind IAP or a Cloud Armor policy" in str(info.value)
    assert "gke-inference:inference.gateway" in str(info.value)
    with pytest.raises(SettingsError) as info:
        plan_platform(
            "dev",
            [*EXTERNAL, "inference.gateway.iapOauthClientId=123-abc.apps.googleusercontent.com"],
            project_dir=REPO,
        )
    assert "iapOauthClientId and iapOauthClientSecret go together" in str(info.value)


def backend_default(*overrides: str) -> dict[str, Any]:
    p = plan("gemma-3-1b-l4.yaml", "dev", *overrides)
    return dict(p.one(BACKEND_POLICY).inputs["spec"]["default"])


def test_routes_get_the_environments_protection() -> None:
    assert "iap" not in backend_default() and "securityPolicy" not in backend_default()
    assert backend_default(*EXTERNAL)["iap"] == {"enabled": True}  # Google-managed client
    custom_client = backend_default(
        *EXTERNAL,
        "inference.gateway.iapOauthClientId=123-abc.apps.googleusercontent.com",
        "inference.gateway.iapOauthClientSecret=iap-client",
        "inference.gateway.securityPolicy=edge-armor",
    )
    assert custom_client["iap"] == {
        "enabled": True,
        "clientID": "123-abc.apps.googleusercontent.com",
        "oauth2ClientSecret": {"name": "iap-client"},
    }
    assert custom_client["securityPolicy"] == "edge-armor"
    armor_only = backend_default(
        *EXTERNAL, "inference.gateway.iap=false", "inference.gateway.securityPolicy=edge-armor"
    )
    assert "iap" not in armor_only and armor_only["securityPolicy"] == "edge-armor"


def test_older_platform_stacks_without_the_output_keep_iap_on_external_routes() -> None:
    assert BackendProtection.from_output({}, "external") == BackendProtection(iap=True)
    assert BackendProtection.from_output({"iap": "true"}, "internal") == BackendProtection()

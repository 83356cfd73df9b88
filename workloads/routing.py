"""Putting a workload behind the environment's gateway: one place for every kind.

An HTTPRoute under ``/<prefix>`` (rewritten to ``/`` for the backend), a
GCPBackendPolicy with timeouts long enough for streamed tokens (and IAP when
the gateway is external), and a HealthCheckPolicy on the backend's own health
path instead of the load balancer's default ``/`` on the serving port.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.inference.gateway import BackendProtection, backend_policy_spec
from gke_inference.inference.inference_extension import POOL_GROUP
from gke_inference.workloads.platform_ref import PlatformRef


def expose_on_gateway(
    name: str,
    workload: str,
    platform: PlatformRef,
    labels: dict[str, str],
    *,
    prefix: str,
    backend_kind: str,  # "Service" or "InferencePool"
    backend_name: str,
    port: int,
    health_path: str,
    opts: pulumi.ResourceOptions,
    timeout_seconds: int | None = None,
) -> None:
    """``timeout_seconds`` defaults to the environment's gateway backend timeout
    (platform setting inference.gateway.backendTimeoutSeconds); a workload may ask
    for less, never for more."""
    namespace = platform.workload_namespace
    group = POOL_GROUP if backend_kind == "InferencePool" else ""
    backend: dict[str, object] = {"name": backend_name}
    if backend_kind == "InferencePool":
        backend.update({"group": group, "kind": backend_kind})
    else:
        backend["port"] = port
    metadata = ObjectMetaArgs(name=workload, namespace=namespace, labels=labels)
    rewrite = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}
    timeout = min(
        timeout_seconds or platform.gateway_backend_timeout_seconds,
        platform.gateway_backend_timeout_seconds,
    )
    health_check = {
        "checkIntervalSec": 15,
        "timeoutSec": 5,
        "healthyThreshold": 1,
        "unhealthyThreshold": 3,
        "config": {
            "type": "HTTP",
            "httpHealthCheck": {
                "portSpecification": "USE_FIXED_PORT",
                "port": port,
                "requestPath": health_path,
            },
        },
    }
    route = {
        "parentRefs": [{"name": platform.gateway_name, "namespace": platform.gateway_namespace}],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": rewrite}],
                "backendRefs": [backend],
            }
        ],
    }
    objects: list[tuple[str, str, str, dict[str, Any]]] = [
        ("route", "gateway.networking.k8s.io/v1", "HTTPRoute", route),
        (
            "backend-policy",
            "networking.gke.io/v1",
            "GCPBackendPolicy",
            backend_policy_spec(
                backend_kind,
                backend_name,
                timeout,
                BackendProtection.from_output(
                    platform.gateway_backend_protection, platform.gateway_exposure
                ),
            ),
        ),
        (
            "health-check",
            "networking.gke.io/v1",
            "HealthCheckPolicy",
            {
                "default": health_check,
                "targetRef": {"group": group, "kind": backend_kind, "name": backend_name},
            },
        ),
    ]
    for suffix, api_version, kind, spec in objects:
        k8s.apiextensions.CustomResource(
            f"{name}-{suffix}",
            api_version=api_version,
            kind=kind,
            metadata=metadata,
            spec=spec,
            opts=opts,
        )

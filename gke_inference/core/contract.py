"""The contract between the platform stack and the workload stacks.

The platform stack exports :class:`PlatformOutputs` (one field per output,
the output's name in the field's metadata); a workload stack reads the same
class back through a StackReference. Both sides go through this module, so
an output cannot be exported under one name and read under another, and a
setting the platform exports (``gatewayBackendTimeoutSeconds``) reaches the
workloads. Renaming or removing a field breaks deployed workload stacks: do it
only with a migration note in docs/upgrades.md. Adding one is safe when it has
a default (platform stacks deployed before it simply lack it).

Beside it: the two Pulumi projects and how their stacks are named.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gke_inference.core.errors import Problem, SpecError

PLATFORM_PROJECT = "gke-inference"
WORKLOADS_PROJECT = "gke-inference-workloads"

#: How a secret value is shown wherever one would otherwise be printed or stored:
#: offline plans, runner outputs, the service's log lines.
SECRET_MASK = "[secret]"

#: Outputs that stay secret: exported as secrets, never read as plain values.
SECRET_OUTPUTS = ("kubeconfig",)


def platform_stack_name(organization: str, environment: str) -> str:
    """``<org>/gke-inference/<env>``: what a workload stack's StackReference names."""
    return f"{organization}/{PLATFORM_PROJECT}/{environment}"


def workload_stack_name(environment: str, workload: str) -> str:
    """The short name of a workload stack: ``<env>-<workload>``."""
    return f"{environment}-{workload}"


def qualified_workload_stack(organization: str, environment: str, workload: str) -> str:
    """``<org>/gke-inference-workloads/<env>-<workload>``."""
    return f"{organization}/{WORKLOADS_PROJECT}/{workload_stack_name(environment, workload)}"


def _output(key: str, **default: Any) -> Any:
    return field(metadata={"output": key}, **default)


@dataclass(frozen=True)
class PlatformOutputs:
    """The platform stack's plain outputs, as a workload stack reads them."""

    project_id: str = _output("projectId")
    region: str = _output("region")
    environment: str = _output("environment")
    mode: str = _output("mode")  # standard | autopilot
    cluster_name: str = _output("clusterName")
    cluster_location: str = _output("clusterLocation")
    cluster_endpoint: str = _output("clusterEndpoint")
    cluster_ca_certificate: str = _output("clusterCaCertificate")
    workload_identity_pool: str = _output("workloadIdentityPool")
    artifact_registry: str = _output("artifactRegistry")
    node_service_account: str = _output("nodeServiceAccount")
    network: str = _output("network")
    subnetwork: str = _output("subnetwork")
    workload_namespace: str = _output("workloadNamespace")
    model_bucket: str = _output("modelBucket")
    gateway_name: str = _output("gatewayName")
    gateway_namespace: str = _output("gatewayNamespace")
    # "<acc>-x<n>[-co]" -> class name; _output is dataclasses.field, not a shared default
    compute_classes: dict[str, str] = _output("computeClasses")  # noqa: RUF009
    # what workload NetworkPolicies admit and reach (workloads/network_policy.py):
    # proxyOnly (the gateway's Envoy proxies), controlPlane and nodes (where the
    # API server's private endpoint is). Required: a workload cannot be isolated
    # without them, so a platform stack deployed before them is upgraded first
    # (docs/upgrades.md).
    network_ranges: dict[str, str] = _output("networkRanges")  # noqa: RUF009
    # Added after the first release: platform stacks deployed before lack them.
    gateway_exposure: str = _output("gatewayExposure", default="internal")
    artifact_registry_remotes: dict[str, str] = _output(  # noqa: RUF009
        "artifactRegistryRemotes", default_factory=dict
    )
    gateway_backend_timeout_seconds: int = _output("gatewayBackendTimeoutSeconds", default=3600)
    # what the environment puts in front of external routes (inference.gateway.backend_
    # protection): iap "true"/"false", iapClientId, iapClientSecret, securityPolicy; {}
    # from older platform stacks means IAP with the Google-managed client
    gateway_backend_protection: dict[str, str] = _output(  # noqa: RUF009
        "gatewayBackendProtection", default_factory=dict
    )
    # machine type -> its queued-provisioning (DWS) pools: capacity only a batch Job's
    # ProvisioningRequest gets (empty in Autopilot and where none is configured)
    queued_node_pools: dict[str, list[str]] = _output(  # noqa: RUF009
        "queuedNodePools", default_factory=dict
    )
    # Binary Authorization's admissionWhitelistPatterns (gke_inference.core.admission);
    # empty where admission is not enforced (and for older platform stacks)
    binary_authorization_allowlist: list[str] = _output(  # noqa: RUF009
        "binaryAuthorizationAllowlist", default_factory=list
    )
    # pinned image name -> sha256 digest (gke_inference.core.images), and whether the
    # environment requires every image by digest (older platform stacks: none, no)
    image_digests: dict[str, str] = _output("imageDigests", default_factory=dict)  # noqa: RUF009
    image_digests_required: bool = _output("imageDigestsRequired", default=False)

    @staticmethod
    def keys() -> dict[str, str]:
        """Output name -> field name, for every plain output."""
        return {f.metadata["output"]: f.name for f in dataclasses.fields(PlatformOutputs)}

    @staticmethod
    def all_keys() -> set[str]:
        """Every output the platform stack exports, secret ones included."""
        return {*PlatformOutputs.keys(), *SECRET_OUTPUTS}

    @classmethod
    async def read(
        cls, value_of: Callable[[str], Awaitable[Any]], *, stack: str, environment: str
    ) -> PlatformOutputs:
        """Read every output with ``value_of(name)`` (None when absent); one SpecError lists
        every required output that is missing."""
        values: dict[str, Any] = {}
        missing: list[str] = []
        for f in dataclasses.fields(cls):
            value = await value_of(f.metadata["output"])
            if value is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    missing.append(f.metadata["output"])
                continue
            values[f.name] = _coerce(f.type, value)
        if missing:
            raise SpecError(
                f"The platform stack {stack!r} cannot serve workloads",
                [
                    Problem(
                        "platform outputs",
                        f"missing {', '.join(missing)}; deploy (or upgrade) the platform stack "
                        f"of environment {environment!r} first",
                    )
                ],
            )
        return cls(**values)


def _coerce(annotation: Any, value: Any) -> Any:
    """Plain values as the field says (the engine hands numbers over as floats)."""
    text = str(annotation)
    if text == "int":
        return int(value)
    if text == "bool":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return bool(value)
    if text == "dict[str, list[str]]":
        return {str(k): [str(v) for v in values] for k, values in dict(value).items()}
    if text == "list[str]":
        return [str(v) for v in value]
    if text.startswith("dict"):
        return {str(k): str(v) for k, v in dict(value).items()}
    return str(value)


def export_platform_outputs(
    export: Callable[[str, Any], None], values: Mapping[str, Any], secrets: Mapping[str, Any]
) -> None:
    """Export ``values`` (keyed by :class:`PlatformOutputs` field name) and ``secrets``
    (keyed by output name) with ``export(name, value)``; every output exactly once."""
    keys = PlatformOutputs.keys()
    fields = set(keys.values())
    if set(values) != fields or set(secrets) != set(SECRET_OUTPUTS):
        missing = sorted((fields - set(values)) | (set(SECRET_OUTPUTS) - set(secrets)))
        extra = sorted((set(values) - fields) | (set(secrets) - set(SECRET_OUTPUTS)))
        raise ValueError(f"outputs contract: missing {missing}, not in the contract {extra}")
    for output, attribute in keys.items():
        export(output, values[attribute])
    for output in SECRET_OUTPUTS:
        export(output, secrets[output])

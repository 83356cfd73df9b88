"""Typed settings of the platform stack, parsed once before any resource exists.

Stack config lives under the project namespace (``gke-inference:<key>``) in
``Pulumi.<env>.yaml``. Structured values are objects (``pulumi config set
--path``). Every key is camelCase in YAML and snake_case here.

Defaults are production-grade: private nodes, Shielded Nodes, Workload
Identity, no public control plane. A production stack (``environment: prod``
or ``production: true``) must also keep secrets encryption, deletion
protection and Binary Authorization on: turning them off there is an error,
not a silent downgrade.

Over 500 lines because it is one schema: every section of the stack config,
and the cross-field rules that tie sections together, in the order of the
README's settings table, so the two can be checked against each other in one
sitting. Its parts are small models; splitting them would scatter the one
document they describe.
"""

from __future__ import annotations

import ipaddress
import json
import re
import typing
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from gke_inference.core.contract import PLATFORM_PROJECT
from gke_inference.core.errors import Problem, SettingsError
from gke_inference.core.images import (
    DIGEST_PATTERN,
    PINNED_IMAGES,
    UPSTREAM_HOSTS,
    Upstream,
)
from gke_inference.core.networks import MIN_PUBLIC_PREFIX, too_public
from gke_inference.core.validation import (
    StrictModel,
    describe_pattern,
    format_path,
    problems_from,
    repeated,
)
from gke_inference.inference import catalog

PROJECT_NAMESPACE = PLATFORM_PROJECT  # config keys are <project>:<key>

_PROJECT_ID = describe_pattern(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
    "a GCP project id: 6-30 lowercase letters, digits or hyphens, starting with a letter",
)
_REGION = describe_pattern(r"^[a-z]+-[a-z]+[0-9]+$", "a GCP region such as us-east4")
ZONE_PATTERN = describe_pattern(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$", "a GCP zone such as us-east4-a")
_DNS_LABEL = describe_pattern(
    r"^[a-z]([a-z0-9-]*[a-z0-9])?$",
    "a DNS label: lowercase letters, digits and hyphens, starting with a letter",
)
_LABEL_KEY = describe_pattern(
    r"^[a-z][a-z0-9_-]{0,62}$", "a GCP label key: lowercase letter first, then [a-z0-9_-]"
)
_LABEL_VALUE = describe_pattern(r"^[a-z0-9_-]{0,63}$", "a GCP label value: [a-z0-9_-], <= 63")
_EMAIL = describe_pattern(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an e-mail address")
_CHANNEL = describe_pattern(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/[0-9]+$",
    "a notification channel id: projects/<project>/notificationChannels/<number>",
)
_MACHINE_TYPE = describe_pattern(
    r"^[a-z0-9]+-[a-z0-9-]+$", "a Compute Engine machine type such as n4-standard-4"
)


def _cidr_text(value: Any) -> Any:
    # ipaddress also turns integers and booleans into networks (True -> 0.0.0.1/32);
    # in a config file those are always mistakes.
    if not isinstance(value, str | ipaddress.IPv4Network):
        raise ValueError("must be an IPv4 CIDR string such as 10.128.0.0/20")
    return value


Cidr = Annotated[
    ipaddress.IPv4Network,
    pydantic.BeforeValidator(_cidr_text),
    Field(description="IPv4 CIDR, e.g. 10.128.0.0/20"),
]


class AuthorizedNetwork(StrictModel):
    cidr: Cidr
    display_name: str = Field(min_length=1, max_length=64)

    @pydantic.field_validator("cidr")
    @classmethod
    def _not_the_internet(cls, value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if value.prefixlen == 0:
            raise ValueError(
                "0.0.0.0/0 would open the control plane to the whole internet; list the "
                "CIDRs of your offices, VPN or CI runners, or keep privateEndpoint: true "
                "and use the DNS endpoint"
            )
        return value


class ExistingNetwork(StrictModel):
    """Bring-your-own VPC: names of resources that already exist in the project."""

    network: str = Field(min_length=1)
    subnetwork: str = Field(min_length=1)
    pod_range_name: str = Field(min_length=1)
    service_range_name: str = Field(min_length=1)


class NetworkSettings(StrictModel):
    mode: Literal["create", "existing"] = "create"
    existing: ExistingNetwork | None = None
    node_cidr: Cidr = ipaddress.IPv4Network("10.128.0.0/20")
    pod_cidr: Cidr = ipaddress.IPv4Network("10.64.0.0/14")
    service_cidr: Cidr = ipaddress.IPv4Network("10.68.0.0/20")
    proxy_only_cidr: Cidr = ipaddress.IPv4Network("10.128.16.0/23")
    control_plane_cidr: Cidr = ipaddress.IPv4Network("172.16.0.32/28")
    flow_logs: bool = False
    nat_logging: Literal["ERRORS_ONLY", "TRANSLATIONS_ONLY", "ALL"] = "ERRORS_ONLY"


class MaintenanceWindow(StrictModel):
    """A recurring window (RFC 5545 RRULE); GKE needs >= 48h of windows per 32 days."""

    # with a time zone: a date or a naive time has no defined instant (and YAML reads an
    # unquoted 2026-01-03 as a date)
    start_time: pydantic.AwareDatetime = datetime.fromisoformat("2026-01-03T03:00:00+00:00")
    end_time: pydantic.AwareDatetime = datetime.fromisoformat("2026-01-03T11:00:00+00:00")
    recurrence: str = Field(default="FREQ=WEEKLY;BYDAY=SA,SU", pattern=r"^FREQ=(DAILY|WEEKLY)")

    @pydantic.model_validator(mode="after")
    def _long_enough(self) -> MaintenanceWindow:
        if self.end_time - self.start_time < timedelta(hours=4):
            raise ValueError("the window must last at least 4 hours (endTime - startTime)")
        return self


class SystemPool(StrictModel):
    """Nodes for platform add-ons (Standard mode only); tainted for managed components."""

    machine_type: str = Field(default="n4-standard-4", pattern=_MACHINE_TYPE)
    disk_type: Literal["hyperdisk-balanced", "pd-balanced", "pd-ssd"] = "hyperdisk-balanced"
    disk_size_gb: int = Field(default=100, ge=50, le=2000)
    min_nodes_per_zone: int = Field(default=1, ge=0, le=100)
    max_nodes_per_zone: int = Field(default=3, ge=1, le=1000)

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> SystemPool:
        if self.max_nodes_per_zone < self.min_nodes_per_zone:
            raise ValueError("maxNodesPerZone must be >= minNodesPerZone")
        return self


class ClusterSettings(StrictModel):
    mode: Literal["standard", "autopilot"] = "standard"
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    private_endpoint: bool = True
    authorized_networks: list[AuthorizedNetwork] = Field(default_factory=list, max_length=50)
    # the widest public range the authorized networks may open together (a prefix)
    authorized_networks_min_public_prefix: int = Field(default=MIN_PUBLIC_PREFIX, ge=8, le=32)
    dns_endpoint: bool = True
    deletion_protection: bool | None = None
    node_locations: list[Annotated[str, Field(pattern=ZONE_PATTERN)]] | None = None
    system_pool: SystemPool = SystemPool()
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    gateway_api_channel: Literal["CHANNEL_STANDARD", "CHANNEL_EXPERIMENTAL"] = "CHANNEL_STANDARD"
    hpa_profile: Literal["PERFORMANCE", "NONE"] = "PERFORMANCE"
    security_posture: Literal["BASIC", "ENTERPRISE"] = "BASIC"
    vulnerability_scanning: Literal[
        "VULNERABILITY_DISABLED", "VULNERABILITY_BASIC", "VULNERABILITY_ENTERPRISE"
    ] = "VULNERABILITY_ENTERPRISE"
    cost_allocation: bool = True


class SecuritySettings(StrictModel):
    secrets_encryption: bool = True
    kms_rotation_days: int = Field(default=90, ge=1, le=365)
    binary_authorization: Literal["enforced", "disabled"] | None = None
    enable_apis: bool = True


class RemoteRepository(StrictModel):
    name: str = Field(pattern=_DNS_LABEL, max_length=63)
    upstream: Upstream


class RegistrySettings(StrictModel):
    repository: str = Field(default="inference", pattern=_DNS_LABEL, max_length=63)
    immutable_tags: bool | None = None
    keep_recent_versions: int = Field(default=20, ge=1, le=1000)
    remotes: list[RemoteRepository] = Field(
        # vLLM, Python and Cloud SDK images come from Docker Hub, the inference
        # extension's endpoint picker from registry.k8s.io: with both cached,
        # Binary Authorization can allow this project's registry only.
        default_factory=lambda: [
            RemoteRepository(name="docker-hub", upstream="docker-hub"),
            RemoteRepository(name="registry-k8s", upstream="registry-k8s"),
        ]
    )


LoggingComponent = Literal[
    "SYSTEM_COMPONENTS", "WORKLOADS", "APISERVER", "CONTROLLER_MANAGER", "SCHEDULER",
    "KCP_HPA", "KCP_CONNECTION", "KCP_SSHD",
]  # fmt: skip
MonitoringComponent = Literal[
    "SYSTEM_COMPONENTS", "APISERVER", "SCHEDULER", "CONTROLLER_MANAGER", "STORAGE", "HPA",
    "POD", "DAEMONSET", "DEPLOYMENT", "STATEFULSET", "KUBELET", "CADVISOR", "DCGM", "JOBSET",
]  # fmt: skip
DEFAULT_LOGGING: tuple[LoggingComponent, ...] = (
    "SYSTEM_COMPONENTS", "WORKLOADS", "APISERVER", "CONTROLLER_MANAGER", "SCHEDULER", "KCP_HPA",
)  # fmt: skip
# DCGM exposes NVIDIA GPU metrics (utilization, memory, power) to Cloud Monitoring.
DEFAULT_MONITORING: tuple[MonitoringComponent, ...] = typing.get_args(MonitoringComponent)


class ObservabilitySettings(StrictModel):
    auto_monitoring: Literal["ALL", "NONE"] = "ALL"
    logging_components: list[LoggingComponent] = Field(default_factory=lambda: [*DEFAULT_LOGGING])
    monitoring_components: list[MonitoringComponent] = Field(
        default_factory=lambda: [*DEFAULT_MONITORING]
    )
    alerts: bool = True
    notification_emails: list[Annotated[str, Field(pattern=_EMAIL)]] = Field(
        default_factory=list, max_length=20
    )
    notification_channels: list[Annotated[str, Field(pattern=_CHANNEL)]] = Field(
        default_factory=list, max_length=20
    )
    queue_depth_alert: int = Field(default=50, ge=1, le=100_000)
    kv_cache_alert: float = Field(default=0.95, gt=0, le=1)
    gpu_idle_percent: float = Field(default=5, ge=0, le=100)
    backlog_alert: int = Field(default=10_000, ge=1)


def _catalog_machine_type(value: str) -> str:
    if value not in catalog.BY_MACHINE_TYPE:
        raise ValueError(
            f"{value!r} is not an accelerator machine type in the catalog; accepted: "
            + ", ".join(catalog.machine_types())
        )
    return value


AcceleratorMachineType = Annotated[str, pydantic.AfterValidator(_catalog_machine_type)]


class AcceleratorPool(StrictModel):
    """A static accelerator node pool (Standard mode); scale-to-zero by default."""

    name: str = Field(pattern=_DNS_LABEL, max_length=32)
    machine_type: AcceleratorMachineType
    provisioning: Literal["on-demand", "spot", "reservation", "queued"] = "on-demand"
    reservation: str | None = Field(default=None, pattern=_DNS_LABEL)
    min_nodes: int = Field(default=0, ge=0, le=1000)
    max_nodes: int = Field(default=4, ge=1, le=1000)
    node_locations: list[Annotated[str, Field(pattern=ZONE_PATTERN)]] | None = None

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> AcceleratorPool:
        if self.max_nodes < self.min_nodes:
            raise ValueError("maxNodes must be >= minNodes")
        if (self.provisioning == "reservation") != (self.reservation is not None):
            raise ValueError(
                "reservation (a reservation name) is set exactly when provisioning is 'reservation'"
            )
        if self.provisioning == "queued" and self.min_nodes:
            raise ValueError("queued provisioning (DWS) pools must have minNodes 0")
        return self


class GatewaySettings(StrictModel):
    exposure: Literal["internal", "external"] = "internal"
    name: str = Field(default="inference-gateway", pattern=_DNS_LABEL, max_length=63)
    namespace: str = Field(default="gateway", pattern=_DNS_LABEL, max_length=63)
    certificate: str | None = Field(default=None, pattern=_DNS_LABEL)
    backend_timeout_seconds: int = Field(default=3600, ge=30, le=86_400)
    # What stands in front of the routes of an external gateway (internal ones are
    # reached from the VPC only): IAP, with the Google-managed OAuth client (users of
    # the organization) unless iapOauthClientId + iapOauthClientSecret (the name of a
    # Secret with key client_secret in the workload namespace) name one, and/or a Cloud
    # Armor security policy. At least one of them for an external gateway.
    iap: bool = True
    iap_oauth_client_id: str | None = Field(
        default=None, pattern=r"^[0-9]+-[a-z0-9]+\.apps\.googleusercontent\.com$"
    )
    iap_oauth_client_secret: str | None = Field(default=None, pattern=_DNS_LABEL)
    security_policy: str | None = Field(default=None, pattern=r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

    @pydantic.model_validator(mode="after")
    def _tls(self) -> GatewaySettings:
        problems = []
        if self.exposure == "external" and not self.certificate:
            problems.append(
                "an external gateway serves HTTPS only: set certificate to the name of a "
                "Google-managed (pre-shared) SSL certificate"
            )
        if self.exposure == "external" and not self.iap and not self.security_policy:
            problems.append(
                "an external gateway's routes must be behind IAP or a Cloud Armor policy: "
                "keep iap: true or set securityPolicy"
            )
        if (self.iap_oauth_client_id is None) != (self.iap_oauth_client_secret is None):
            problems.append(
                "iapOauthClientId and iapOauthClientSecret go together (a custom OAuth "
                "client), or neither (the Google-managed one)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class AnywhereCacheSettings(StrictModel):
    """SSD-backed zonal read caches of the model bucket (Cloud Storage Anywhere Cache),
    in the zones the model servers run in (inference.model_storage)."""

    zones: list[Annotated[str, Field(pattern=ZONE_PATTERN)]] = Field(min_length=1, max_length=10)
    # Cloud Storage accepts 1 hour to 7 days (default 1 day); weights change only
    # with a new revision under a new path, so a week keeps a model hot.
    ttl_hours: int = Field(default=168, ge=1, le=168)

    @pydantic.field_validator("zones")
    @classmethod
    def _one_cache_per_zone(cls, value: list[str]) -> list[str]:
        if twice := repeated(value):
            raise ValueError(f"a bucket has at most one cache per zone; {twice} is listed twice")
        return value


class ModelBucketSettings(StrictModel):
    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
    soft_delete_days: int = Field(default=7, ge=0, le=90)
    anywhere_cache: AnywhereCacheSettings | None = None


class InferenceSettings(StrictModel):
    """The inference layer: accelerators, compute classes, storage, traffic."""

    accelerators: list[AcceleratorMachineType] = Field(
        default_factory=lambda: ["g2-standard-8", "g2-standard-24"], max_length=40
    )
    node_pools: list[AcceleratorPool] = Field(default_factory=list)
    nap_max_devices: dict[str, int] = Field(default_factory=dict)
    cost_optimized_classes: bool = True
    workload_namespace: str = Field(default="inference", pattern=_DNS_LABEL, max_length=63)
    gateway: GatewaySettings = GatewaySettings()
    model_bucket: ModelBucketSettings = ModelBucketSettings()
    metrics_adapter_image: str = Field(
        default=PINNED_IMAGES["metrics-adapter"].ref,
        pattern=r"^[a-z0-9.-]+(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$",
    )

    @pydantic.field_validator("nap_max_devices")
    @classmethod
    def _known_nap_keys(cls, value: dict[str, int]) -> dict[str, int]:
        for key, limit in value.items():
            if key not in catalog.BY_KEY:
                raise ValueError(
                    f"{key!r} is not an accelerator; accepted: {', '.join(catalog.BY_KEY)}"
                )
            if limit < 0:
                raise ValueError(f"{key}: the limit must be >= 0 (got {limit})")
        return value

    @property
    def node_devices(self) -> dict[str, int]:
        """Accelerator key -> devices on one node of its largest enabled machine shape,
        for every accelerator some class of ``accelerators`` uses."""
        found: dict[str, int] = {}
        for machine_type in self.accelerators:
            acc, shape = catalog.lookup(machine_type)
            found[acc.key] = max(found.get(acc.key, 0), shape.count)
        return found

    def nap_ceiling(self, accelerator: catalog.Accelerator) -> int:
        """The node auto-provisioning ceiling of ``accelerator``: ``napMaxDevices`` or the
        catalog default when an enabled class uses it, else 0 (no class asks for it, so
        auto-provisioning never creates its nodes and it costs nothing by surprise)."""
        if accelerator.key not in self.node_devices:
            return 0
        return self.nap_max_devices.get(accelerator.key, accelerator.default_max_devices)


class ImageSettings(StrictModel):
    """Digests of the pinned images (:mod:`gke_inference.core.images`), by name."""

    digests: dict[str, Annotated[str, Field(pattern=DIGEST_PATTERN)]] = Field(
        default_factory=dict, max_length=len(PINNED_IMAGES)
    )
    # Every image by digest; default: in production. A production stack cannot opt out.
    require_digests: bool | None = None

    @pydantic.field_validator("digests")
    @classmethod
    def _known_images(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in PINNED_IMAGES:
                raise ValueError(
                    f"{key!r} is not a pinned image; accepted: {', '.join(PINNED_IMAGES)}"
                )
        return value


class PlatformSettings(StrictModel):
    """Everything the platform stack reads from its config, validated."""

    project: str = Field(pattern=_PROJECT_ID)
    region: str = Field(default="us-east4", pattern=_REGION)
    environment: str = Field(pattern=_DNS_LABEL, max_length=12)
    production: bool | None = None
    name_prefix: str = Field(default="inf", pattern=_DNS_LABEL, max_length=8)
    labels: dict[
        Annotated[str, Field(pattern=_LABEL_KEY)], Annotated[str, Field(pattern=_LABEL_VALUE)]
    ] = Field(default_factory=dict, max_length=48)
    network: NetworkSettings = NetworkSettings()
    cluster: ClusterSettings = ClusterSettings()
    security: SecuritySettings = SecuritySettings()
    registry: RegistrySettings = RegistrySettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    inference: InferenceSettings = InferenceSettings()
    images: ImageSettings = ImageSettings()

    # Derived facts: one place decides what "production" implies.
    @property
    def is_production(self) -> bool:
        return self.production if self.production is not None else self.environment == "prod"

    @property
    def cluster_name(self) -> str:
        return f"{self.name_prefix}-{self.environment}"

    @property
    def deletion_protection(self) -> bool:
        explicit = self.cluster.deletion_protection
        return self.is_production if explicit is None else explicit

    @property
    def binary_authorization_enforced(self) -> bool:
        explicit = self.security.binary_authorization
        return self.is_production if explicit is None else explicit == "enforced"

    @property
    def image_digests_required(self) -> bool:
        explicit = self.images.require_digests
        return self.is_production if explicit is None else explicit

    @property
    def network_ranges(self) -> dict[str, str]:
        """The ranges workload NetworkPolicies need (the platform output ``networkRanges``):
        the proxy-only subnet the gateway's proxies send from, and where the API server's
        private endpoint lives (the control-plane range; the node subnet for clusters whose
        endpoint is a Private Service Connect address there)."""
        net = self.network
        return {
            "proxyOnly": str(net.proxy_only_cidr),
            "controlPlane": str(net.control_plane_cidr),
            "nodes": str(net.node_cidr),
        }

    @property
    def image_digests(self) -> dict[str, str]:
        """Pinned image name -> digest, as configured (the platform output ``imageDigests``)."""
        return dict(sorted(self.images.digests.items()))

    def platform_image(self, name: str) -> str:
        """A pinned image the platform itself runs, as its cluster pulls it: through this
        project's remote of its upstream (the repository ``registry.remotes`` names), with
        its configured digest."""
        image = PINNED_IMAGES[name]
        ref = image.ref
        if image.source == "remote" and image.upstream is not None:
            remote = next((r for r in self.registry.remotes if r.upstream == image.upstream), None)
            host = (
                f"{self.region}-docker.pkg.dev/{self.project}/{remote.name}"
                if remote
                else UPSTREAM_HOSTS[image.upstream]
            )
            ref = f"{host}/{image.ref}"
        digest = self.images.digests.get(name)
        return f"{ref}@{digest}" if digest else ref

    @property
    def metrics_adapter_image(self) -> str:
        """The adapter image to run: the setting, pinned by its configured digest when it is
        the pinned default."""
        image = self.inference.metrics_adapter_image
        if image == PINNED_IMAGES["metrics-adapter"].ref:
            digest = self.images.digests.get("metrics-adapter")
            return f"{image}@{digest}" if digest else image
        return image

    @property
    def immutable_tags(self) -> bool:
        explicit = self.registry.immutable_tags
        return self.is_production if explicit is None else explicit

    @property
    def autopilot(self) -> bool:
        return self.cluster.mode == "autopilot"

    @property
    def workload_pool(self) -> str:
        return f"{self.project}.svc.id.goog"

    @property
    def common_labels(self) -> dict[str, str]:
        """Labels every labelable GCP resource carries (policy checks for them)."""
        return {
            **self.labels,
            "environment": self.environment,
            "managed-by": "pulumi",
            "platform": PLATFORM_PROJECT,
        }


Adder = typing.Callable[[str, str], None]


def _network_problems(net: NetworkSettings, add: Adder) -> None:
    if net.mode == "existing" and net.existing is None:
        add("network.existing", "is required when network.mode is 'existing'")
    if net.mode != "create":
        return
    ranges = {
        "nodeCidr": net.node_cidr,
        "podCidr": net.pod_cidr,
        "serviceCidr": net.service_cidr,
        "proxyOnlyCidr": net.proxy_only_cidr,
        "controlPlaneCidr": net.control_plane_cidr,
    }
    names = list(ranges)
    for i, a in enumerate(names):
        if not ranges[a].is_private:
            add(f"network.{a}", f"{ranges[a]} is not a private (RFC 1918) range")
        for b in names[i + 1 :]:
            if ranges[a].overlaps(ranges[b]):
                add(
                    f"network.{a}",
                    f"{ranges[a]} overlaps network.{b} ({ranges[b]}); "
                    "node, pod, service, proxy-only and control-plane ranges must be disjoint",
                )
    if net.control_plane_cidr.prefixlen != 28:
        add("network.controlPlaneCidr", f"{net.control_plane_cidr} must be a /28")
    if net.node_cidr.prefixlen > 24:
        add("network.nodeCidr", f"{net.node_cidr} is smaller than /24; too few node IPs")


def _cluster_problems(cluster: ClusterSettings, region: str | None, add: Adder) -> None:
    if not cluster.private_endpoint and not cluster.authorized_networks:
        add(
            "cluster.authorizedNetworks",
            "must list at least one CIDR when privateEndpoint is false "
            "(a public endpoint open to every address is not allowed)",
        )
    why = too_public(
        [n.cidr for n in cluster.authorized_networks], cluster.authorized_networks_min_public_prefix
    )
    if why:
        add(
            "cluster.authorizedNetworks",
            f"{why}: that is the control plane open to the internet; list the CIDRs of your "
            "offices, VPN or CI runners (or lower cluster.authorizedNetworksMinPublicPrefix, "
            "deliberately)",
        )
    for i, zone in enumerate(cluster.node_locations or []):
        if region and not zone.startswith(f"{region}-"):
            add(f"cluster.nodeLocations.{i}", f"zone {zone!r} is not in region {region!r}")


def _anywhere_cache_problems(s: PlatformSettings, add: Adder) -> None:
    """Caches in the bucket's region, and in zones where this cluster runs nodes: a
    cache serves only reads from its own zone."""
    cache = s.inference.model_bucket.anywhere_cache
    if cache is None:
        return
    node_zones = set(s.cluster.node_locations or [])
    for pool in s.inference.node_pools:
        node_zones |= set(pool.node_locations or [])
    path = "inference.modelBucket.anywhereCache.zones"
    for i, zone in enumerate(cache.zones):
        if s.region and not zone.startswith(f"{s.region}-"):
            add(
                f"{path}.{i}",
                f"zone {zone!r} is not in region {s.region!r}, where the model bucket is "
                "(a cache must be in a zone of its bucket's location)",
            )
        elif s.cluster.node_locations and zone not in node_zones:
            add(
                f"{path}.{i}",
                f"zone {zone!r} has no nodes of this cluster, so nothing would read through "
                f"its cache; the nodes run in {', '.join(sorted(node_zones))}",
            )


def _inference_problems(s: PlatformSettings, add: Adder) -> None:
    inf = s.inference
    _anywhere_cache_problems(s, add)
    seen: dict[str, str] = {}
    for i, machine_type in enumerate(inf.accelerators):
        acc, shape = catalog.lookup(machine_type)
        name = catalog.class_name(acc, shape)
        if name in seen:
            add(
                f"inference.accelerators.{i}",
                f"{machine_type!r} gives the same compute class {name!r} as {seen[name]!r}; "
                "enable one machine type per accelerator and size",
            )
        seen[name] = machine_type
    names = [p.name for p in inf.node_pools]
    for i, name in enumerate(names):
        if names.index(name) != i:
            add(f"inference.nodePools.{i}.name", f"{name!r} is used by another pool")
    for i, pool in enumerate(inf.node_pools):
        if pool.machine_type not in inf.accelerators:
            # Pods reach a static pool through its compute class (or, queued, through
            # a batch Job sized to that class): without one nothing ever lands there.
            add(
                f"inference.nodePools.{i}.machineType",
                f"{pool.machine_type!r} is not in inference.accelerators, so no compute class "
                f"would use this pool; accepted: {', '.join(inf.accelerators) or 'none'} "
                "(or add it to inference.accelerators)",
            )
    if not s.autopilot:  # Autopilot has no node auto-provisioning limits
        _nap_problems(inf, add)


def _nap_problems(inf: InferenceSettings, add: Adder) -> None:
    """Ceilings that forbid what the enabled classes ask for, or allow what none asks for."""
    needed = inf.node_devices
    for acc in catalog.CATALOG:
        path = f"inference.napMaxDevices.{acc.key}"
        ceiling, minimum = inf.nap_ceiling(acc), needed.get(acc.key)
        if minimum is not None and ceiling < minimum:
            largest = max(
                (m for m in inf.accelerators if catalog.lookup(m)[0].key == acc.key),
                key=lambda m: catalog.lookup(m)[1].count,
            )
            add(
                path,
                f"{ceiling} is below the {minimum} devices of one {largest} node: the cluster "
                f"autoscaler could never add one; set at least {minimum} (or remove {largest} "
                "from inference.accelerators)",
            )
        pools = [p for p in inf.node_pools if catalog.lookup(p.machine_type)[0].key == acc.key]
        held = sum(p.max_nodes * catalog.lookup(p.machine_type)[1].count for p in pools)
        if minimum is not None and ceiling >= minimum and ceiling < held:
            # the limits are cluster-wide: static pools' nodes count against them too
            add(
                path,
                f"{ceiling} is below the {held} devices the static pools may hold ("
                + ", ".join(
                    f"{p.name} {p.max_nodes} x {catalog.lookup(p.machine_type)[1].count}"
                    for p in pools
                )
                + f"): they could never reach maxNodes; set at least {held}, plus what node "
                "auto-provisioning may add (or lower the pools' maxNodes)",
            )
        explicit = inf.nap_max_devices.get(acc.key, 0)
        if minimum is None and explicit > 0:
            add(
                path,
                f"{explicit} has no effect: no machine type of {acc.key} is in "
                "inference.accelerators, so its ceiling is 0; enable one of "
                f"{', '.join(shape.machine_type for shape in acc.shapes)} or remove the key",
            )


def _production_problems(s: PlatformSettings, add: Adder) -> None:
    if not s.is_production:
        return
    if not s.security.secrets_encryption:
        add("security.secretsEncryption", "must be true in a production stack (got false)")
    if s.cluster.deletion_protection is False:
        add("cluster.deletionProtection", "must be true in a production stack (got false)")
    if s.security.binary_authorization == "disabled":
        add("security.binaryAuthorization", "must be 'enforced' in a production stack")
    if s.images.require_digests is False:
        add("images.requireDigests", "must be true in a production stack (got false)")


def _image_problems(s: PlatformSettings, add: Adder) -> None:
    """Images Binary Authorization will admit. (Missing digests are the mandatory policy
    ``images-pinned-by-digest``: it sees every image, the spec's own included.)"""
    if s.binary_authorization_enforced:
        # Pinned images come through the remotes; without one they would name the
        # upstream registry, which the allow-list (this project's registry) refuses.
        have = {r.upstream for r in s.registry.remotes}
        needed = sorted(
            {i.upstream for i in PINNED_IMAGES.values() if i.upstream and i.upstream not in have}
        )
        if needed:
            add(
                "registry.remotes",
                "Binary Authorization admits this project's Artifact Registry only, and the "
                f"pinned images come from {', '.join(needed)}: add a remote for each "
                f"(upstream {', '.join(needed)})",
            )


def _consistency_problems(
    data: Mapping[str, Any], settings: PlatformSettings | None, prefix: str
) -> list[Problem]:
    """Rules that span several fields.

    When the whole config failed shape validation, each section that is valid
    on its own is still checked, so one run reports every problem.
    """
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(format_path(prefix, path.split(".")), message))

    if settings is not None:
        _network_problems(settings.network, add)
        _cluster_problems(settings.cluster, settings.region, add)
        _inference_problems(settings, add)
        _production_problems(settings, add)
        _image_problems(settings, add)
        return problems
    network = _section(NetworkSettings, data.get("network"))
    if network is not None:
        _network_problems(network, add)
    cluster = _section(ClusterSettings, data.get("cluster"))
    if cluster is not None:
        region = data.get("region")
        _cluster_problems(cluster, region if isinstance(region, str) else None, add)
    return problems


def _section(model: type[StrictModel], value: Any) -> Any:
    try:
        return model.model_validate(value if value is not None else {})
    except pydantic.ValidationError:
        return None


def _fix_index_paths(problems: list[Problem]) -> list[Problem]:
    # format_path got "nodeLocations.3" style parts from _consistency_problems; show [3].
    return [Problem(re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", p.path), p.message) for p in problems]


def parse_settings(raw: Mapping[str, Any], stack: str) -> PlatformSettings:
    """Validate the project-namespace config values; raise one SettingsError listing all."""
    prefix = f"{PROJECT_NAMESPACE}:"
    data = dict(raw)
    data.setdefault("environment", stack)
    subject = f"Invalid configuration for stack {stack!r}"
    try:
        settings = PlatformSettings.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = problems_from(exc, PlatformSettings, prefix)
        for p in problems:
            if p.path == f"{prefix}project" and "required" in p.message:
                problems[problems.index(p)] = Problem(
                    p.path,
                    "is required but not set; set it with "
                    "`pulumi config set gke-inference:project <gcp-project-id>`",
                )
        problems += _fix_index_paths(_consistency_problems(data, None, prefix))
        raise SettingsError(subject, problems) from None
    problems = _fix_index_paths(_consistency_problems(data, settings, prefix))
    if problems:
        raise SettingsError(subject, problems)
    return settings


def decode_config_value(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; decode it."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def project_config(all_config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``gke-inference:*`` keys of a full config map, decoded."""
    prefix = f"{PROJECT_NAMESPACE}:"
    return {
        key[len(prefix) :]: decode_config_value(value)
        for key, value in all_config.items()
        if key.startswith(prefix)
    }

"""The offline plan: run a real Pulumi program under the mock runtime and record it.

Nothing here talks to a cloud or needs the Pulumi CLI. The recording holds what
the engine would receive for every resource (type, name, parent, options and
camelCase inputs), so reviewers, tests and the policy pack all look at the
same shapes ``pulumi preview`` produces.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gke_inference.core import sdk_internals as sdk
from gke_inference.core.contract import SECRET_MASK
from gke_inference.offline.schema import sorted_maps, typed_inputs

STACK_TYPE = "pulumi:pulumi:Stack"
FAKE_PROJECT_NUMBER = "123456789012"
#: How a value only the cloud knows (a cluster's endpoint and CA certificate) is
#: shown in a printed or exported plan, as ``pulumi preview`` shows an unknown
#: output; ``Plan.to_json`` also lists those outputs under ``unknownOutputs``.
UNKNOWN = "[unknown]"

_log = logging.getLogger("gke_inference.offline.recording")


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    provider: str | None
    depends_on: list[str]
    read: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    # What a read returned (a StackReference's outputs, secrets masked): the props a
    # stack policy sees for a read resource.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def props(self) -> dict[str, Any]:
        """The properties policies see: a read's state, a registration's inputs."""
        return self.state if self.read and self.state else self.inputs

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "custom": self.custom,
            "inputs": sorted_maps(self.inputs),
            "protect": self.protect,
            "provider": self.provider,
            "dependsOn": self.depends_on,
        }
        if self.read:
            out["read"] = True
            if self.state:
                out["state"] = sorted_maps(self.state)
        if self.options:
            out["options"] = sorted_maps(self.options)
        return out


@dataclass
class Plan:
    project: str
    stack: str
    resources: list[RecordedResource]
    outputs: dict[str, Any]
    secret_outputs: list[str] = field(default_factory=list)
    # Outputs whose value only the cloud knows: ``outputs`` holds the mock's stand-in
    # (workload plans read them through the StackReference); printed as UNKNOWN.
    unknown_outputs: list[str] = field(default_factory=list)

    def shown_outputs(self) -> dict[str, Any]:
        """The outputs as a preview shows them: maps sorted, cloud-computed ones UNKNOWN."""
        unknown = set(self.unknown_outputs)
        return {
            key: UNKNOWN if key in unknown else sorted_maps(self.outputs[key])
            for key in sorted(self.outputs)
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "resources": [r.to_json() for r in self.resources],
            "outputs": self.shown_outputs(),
            "unknownOutputs": sorted(self.unknown_outputs),
        }

    def by_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RecordedResource:
        found = [r for r in self.by_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} named {name!r}, found {len(found)}")
        return found[0]


def mask_secrets(value: Any) -> tuple[Any, bool]:
    """Replace every secret in a deserialized value by a mask; say whether any was found."""
    if sdk.is_rpc_secret(value):
        return SECRET_MASK, True
    if isinstance(value, dict):
        found = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[key], secret = mask_secrets(item)
            found = found or secret
        return out, found
    if isinstance(value, list):
        items = [mask_secrets(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def _urn_of_ref(ref: str) -> str | None:
    # Provider references are "<urn>::<id>"; the URN itself contains "::".
    if not ref:
        return None
    return ref.rsplit("::", 1)[0]


def typ_is_kubernetes_object(typ: str) -> bool:
    return typ.startswith("kubernetes:")


class PlanMocks(sdk.Mocks):
    """Answers the engine's questions with plausible, deterministic values.

    Outputs are the inputs plus the computed attributes the program reads
    (emails, endpoints, ids). The mock has no auto-naming, so ``name`` falls back
    to the logical name. Values no input determines (a cluster's endpoint and CA
    certificate) are stand-ins, kept in ``computed`` so a plan shows them unknown.
    """

    def __init__(
        self,
        project_id: str | None = None,
        stack_outputs: dict[str, tuple[dict[str, Any], list[str]]] | None = None,
    ) -> None:
        self.project_id = project_id or "offline-project"
        # StackReference name -> (outputs, names of the secret outputs)
        self.stack_outputs = stack_outputs or {}
        # stand-ins for values only the cloud computes
        self.computed: set[str] = set()

    def new_resource(self, args: sdk.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            ref = str(inputs.get("name") or args.resource_id or args.name)
            outputs, secret_names = self.stack_outputs.get(ref, ({}, []))
            return ref, {**inputs, "outputs": outputs, "secretOutputNames": secret_names}
        if typ_is_kubernetes_object(args.typ):
            # Nothing reads a Kubernetes object's outputs but its metadata;
            # echoing whole pod specs back costs a serialization round trip.
            return f"{args.name}-id", {
                k: inputs[k] for k in ("apiVersion", "kind", "metadata") if k in inputs
            }
        state: dict[str, Any] = {**inputs}
        state.setdefault("name", args.name)
        resource_id = f"{args.name}-id"
        typ = args.typ
        project = inputs.get("project", self.project_id)
        if typ == "gcp:serviceaccount/account:Account":
            account = inputs.get("accountId", args.name)
            state["email"] = f"{account}@{project}.iam.gserviceaccount.com"
            state["member"] = f"serviceAccount:{state['email']}"
            resource_id = f"projects/{project}/serviceAccounts/{state['email']}"
        elif typ == "gcp:container/cluster:Cluster":
            digest = hashlib.sha256(str(inputs.get("name")).encode()).digest()
            state["endpoint"] = "172.16.0.34"
            certificate = base64.b64encode(b"offline-ca-" + digest[:8]).decode()
            dns_endpoint = f"gke-{digest.hex()[:32]}.{inputs.get('location')}.gke.goog"
            self.computed |= {state["endpoint"], certificate, dns_endpoint}
            state["masterAuth"] = {
                **(inputs.get("masterAuth") or {}),
                "clusterCaCertificate": certificate,
            }
            state["controlPlaneEndpointsConfig"] = {
                **(inputs.get("controlPlaneEndpointsConfig") or {}),
                "dnsEndpointConfig": {
                    **(
                        (inputs.get("controlPlaneEndpointsConfig") or {}).get("dnsEndpointConfig")
                        or {}
                    ),
                    "endpoint": dns_endpoint,
                },
            }
            resource_id = (
                f"projects/{project}/locations/{inputs.get('location')}/clusters/{state['name']}"
            )
        elif typ == "gcp:kms/keyRing:KeyRing":
            resource_id = (
                f"projects/{project}/locations/{inputs.get('location')}/keyRings/{state['name']}"
            )
        elif typ == "gcp:kms/cryptoKey:CryptoKey":
            resource_id = f"{inputs.get('keyRing')}/cryptoKeys/{state['name']}"
        elif typ in ("gcp:compute/network:Network", "gcp:compute/subnetwork:Subnetwork"):
            kind = "networks" if typ.endswith("Network") else "subnetworks"
            where = "global" if kind == "networks" else f"regions/{inputs.get('region')}"
            resource_id = f"projects/{project}/{where}/{kind}/{state['name']}"
            state["selfLink"] = f"https://www.googleapis.com/compute/v1/{resource_id}"
        elif typ == "gcp:artifactregistry/repository:Repository":
            state["name"] = inputs.get("repositoryId", args.name)
            resource_id = f"projects/{project}/locations/{inputs.get('location')}/repositories/{state['name']}"
        elif typ == "gcp:storage/bucket:Bucket":
            state["url"] = f"gs://{state['name']}"
            resource_id = state["name"]
        elif typ == "gcp:pubsub/topic:Topic":
            resource_id = f"projects/{project}/topics/{state['name']}"
        elif typ == "gcp:pubsub/subscription:Subscription":
            resource_id = f"projects/{project}/subscriptions/{state['name']}"
        state.setdefault("id", resource_id)
        return resource_id, state

    def call(self, args: sdk.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        if args.token == "gcp:organizations/getProject:getProject":
            project = args.args.get("projectId") or self.project_id
            return {"projectId": project, "number": FAKE_PROJECT_NUMBER, "name": project}, []
        return {}, []


class RecordingMonitor(sdk.MockMonitor):
    """A mock monitor that also keeps what every registration asked for."""

    def __init__(self, mocks: sdk.Mocks) -> None:
        super().__init__(mocks)
        self._lock = threading.Lock()
        self.records: dict[str, RecordedResource] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.secret_outputs: dict[str, list[str]] = {}

    def _record(self, urn: str, request: Any, raw: Any, *, read: bool) -> None:
        inputs, _ = mask_secrets(raw if isinstance(raw, dict) else {})
        inputs = typed_inputs(request.type, inputs)  # numbers arrive as floats
        options: dict[str, Any] = {}
        if not read:
            if request.ignoreChanges:
                options["ignoreChanges"] = list(request.ignoreChanges)
            if request.additionalSecretOutputs:
                options["additionalSecretOutputs"] = list(request.additionalSecretOutputs)
            if request.deleteBeforeReplace:
                options["deleteBeforeReplace"] = True
            if request.HasField("retainOnDelete") and request.retainOnDelete:
                options["retainOnDelete"] = True
            if request.replaceOnChanges:
                options["replaceOnChanges"] = list(request.replaceOnChanges)
        record = RecordedResource(
            urn=urn,
            type=request.type,
            name=request.name,
            parent=request.parent or None,
            custom=True if read else bool(request.custom),
            inputs=inputs,
            protect=bool(getattr(request, "protect", False)) if not read else False,
            provider=_urn_of_ref(request.provider),
            depends_on=sorted(set(request.dependencies)),
            read=read,
            options=options,
        )
        with self._lock:
            self.records[urn] = record

    def RegisterResource(self, request: Any) -> Any:
        # MockMonitor.RegisterResource, with the inputs deserialized once and
        # shared with the recording (a plan's largest cost after the SDK's own).
        urn = self.make_urn(request.parent, request.type, request.name)
        sdk.ensure_event_loop()
        inputs = sdk.deserialize_properties(request.object)
        self._record(urn, request, inputs, read=False)
        if request.type == STACK_TYPE:
            return sdk.RegisterResourceResponse(urn=urn)
        resource_args = sdk.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
            transforms=sdk.resolve_callbacks(request.transforms),
        )
        new_id, state = self.mocks.new_resource(resource_args)
        resource_id = new_id or ""
        state_proto = sdk.sync_await(sdk.serialize_properties(state))
        self.resources[urn] = sdk.MockMonitor.ResourceRegistration(urn, resource_id, state)
        return sdk.RegisterResourceResponse(urn=urn, id=resource_id, object=state_proto)

    def ReadResource(self, request: Any) -> Any:
        response = super().ReadResource(request)  # type: ignore[no-untyped-call]
        sdk.ensure_event_loop()
        self._record(
            response.urn, request, sdk.deserialize_properties(request.properties), read=True
        )
        state, _ = mask_secrets(sdk.deserialize_properties(response.properties))
        if request.type == "pulumi:pulumi:StackReference":
            # The mock hands secret outputs over in clear; a policy sees them masked.
            secret = set(state.get("secretOutputNames") or [])
            outputs = dict(state.get("outputs") or {})
            state["outputs"] = {k: SECRET_MASK if k in secret else v for k, v in outputs.items()}
        with self._lock:
            self.records[response.urn].state = state
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        sdk.ensure_event_loop()
        raw = sdk.deserialize_properties(request.outputs)
        values: dict[str, Any] = {}
        secrets: list[str] = []
        for key, value in (raw or {}).items():
            values[key], secret = mask_secrets(value)
            if secret:
                secrets.append(key)
        with self._lock:
            self.outputs[request.urn] = values
            self.secret_outputs[request.urn] = secrets
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


_frozen = False


def _freeze_heap_once() -> None:
    """After the first plan, move the imported SDK modules out of the GC's way.

    The provider SDKs are hundreds of thousands of long-lived objects; every
    full collection walks them again while a plan allocates Outputs by the
    thousand. Freezing them once (they never die) makes later plans in the same
    process (tests, the service, many workload plans) measurably faster.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def run_offline(
    program: Callable[[], Awaitable[None] | None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str],
    secret_keys: list[str] | None = None,
    organization: str = "organization",
    mocks: sdk.Mocks | None = None,
    monitor: RecordingMonitor | None = None,
) -> Plan:
    """Run ``program`` as ``pulumi up`` would, against mocks, and return the recording.

    Each call gets its own event loop and runtime settings, so plans can run
    one after another in one process (tests, the service's offline runner).
    Exceptions from the program (e.g. a SettingsError) propagate unchanged.
    """
    if monitor is None:
        monitor = RecordingMonitor(mocks or PlanMocks(config.get("gke-inference:project")))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        sdk.configure_mock_runtime(
            monitor, project=project, stack=stack, organization=organization, log=_log
        )
        sdk.set_engine_config(config, secret_keys or [])
        loop.run_until_complete(sdk.run_in_stack(program))
    finally:
        # A program that failed half-way leaves outputs pending; drop them with
        # this loop so the next plan in the process starts clean.
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        sdk.reset_runtime()
        sdk.set_engine_config({}, [])
        asyncio.set_event_loop(None)
        loop.close()

    _freeze_heap_once()
    stack_urn = next((u for u, r in monitor.records.items() if r.type == STACK_TYPE), None)
    resources = sorted(monitor.records.values(), key=lambda r: r.urn)
    if stack_urn is None:
        stack_urn = f"urn:pulumi:{stack}::{project}::{STACK_TYPE}::{project}-{stack}"
        resources.insert(
            0,
            RecordedResource(
                stack_urn, STACK_TYPE, f"{project}-{stack}", None, False, {}, False, None, []
            ),
        )
    outputs = monitor.outputs.get(stack_urn, {})
    computed: set[str] = getattr(monitor.mocks, "computed", set())
    return Plan(
        project=project,
        stack=stack,
        resources=resources,
        outputs=outputs,
        secret_outputs=monitor.secret_outputs.get(stack_urn, []),
        unknown_outputs=sorted(k for k, v in outputs.items() if _mentions(v, computed)),
    )


def _mentions(value: Any, stand_ins: set[str]) -> bool:
    """Whether ``value`` holds (or is built from) one of the mock's stand-in values."""
    if isinstance(value, str):
        return any(s in value for s in stand_ins)
    if isinstance(value, dict):
        return any(_mentions(v, stand_ins) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, stand_ins) for v in value)
    return False

"""Run the pack in-process on an offline plan, the way the Pulumi CLI would.

Each recorded resource becomes ``ResourceValidationArgs`` for every resource
policy, and the whole recording becomes ``StackValidationArgs`` of
``PolicyResource``s (parents, dependencies and providers linked) for the stack
policies. Levels and parameters come from :func:`config.resolve_pack_config`,
which reads the ``--policy-pack-config`` format, so the rules run unchanged in
both places. ``not_applicable`` is recorded, not reported as a violation.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from gke_inference.offline.recording import STACK_TYPE, Plan, RecordedResource
from gke_inference.policy.config import ResolvedPolicyConfig, resolve_pack_config
from gke_inference.policy.pack import ALL_POLICIES, INITIAL_CONFIG, PACK_ENFORCEMENT, PACK_NAME


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str  # "mandatory" | "advisory"
    urn: str
    message: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class PolicyReport:
    checked: int
    violations: list[Violation] = field(default_factory=list)
    not_applicable: list[tuple[str, str, str]] = field(default_factory=list)  # policy, urn, why

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == EnforcementLevel.MANDATORY.value]

    @property
    def advisory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == EnforcementLevel.ADVISORY.value]

    def to_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "violations": [v.to_json() for v in self.violations]}


class PlanFileError(ValueError):
    """A saved plan cannot be read; ``detail`` says what is wrong with ``source``."""

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = detail
        super().__init__(f"{source}: {detail}")


def _options(resource: RecordedResource) -> PolicyResourceOptions:
    opts = resource.options
    return PolicyResourceOptions(
        bool(resource.protect),
        list(opts.get("ignoreChanges", [])),
        opts.get("deleteBeforeReplace"),
        [],
        PolicyCustomTimeouts(0, 0, 0),
        list(opts.get("additionalSecretOutputs", [])),
        resource.parent,
    )


def _copy(value: Any) -> Any:
    """A private deep copy, so a rule can never change the recording."""
    return json.loads(json.dumps(value))


def _run(result: Any) -> None:
    if result is not None and inspect.isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


def _is_not_applicable(exc: Exception) -> str | None:
    if type(exc).__name__ == "_NotApplicableError":
        return str(getattr(exc, "reason", "") or "not applicable")
    return None


def check_resources(
    resources: Sequence[RecordedResource],
    config: Mapping[str, Any] | None = None,
    *,
    policies: Sequence[Policy] | None = None,
    source: str = "policy config",
) -> PolicyReport:
    """Validate recorded resources with the pack; ``config`` is a ``--policy-pack-config`` dict."""
    policies = list(policies if policies is not None else ALL_POLICIES)
    resolved: dict[str, ResolvedPolicyConfig] = resolve_pack_config(
        policies, config, initial_config=INITIAL_CONFIG, pack_level=PACK_ENFORCEMENT, source=source
    )
    by_urn = {r.urn: r for r in resources}
    analyzed = [r for r in resources if r.type != STACK_TYPE]
    stack_urn = next((r.urn for r in resources if r.type == STACK_TYPE), "")

    providers: dict[str, PolicyProviderResource] = {}
    for r in resources:
        if r.provider and r.provider in by_urn and r.provider not in providers:
            p = by_urn[r.provider]
            providers[r.provider] = PolicyProviderResource(p.type, _copy(p.inputs), p.urn, p.name)
    stack_resources = _policy_resources(analyzed, providers)

    def runs(policy: Policy, props: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """(urn, validation args) of each run of ``policy``: per resource, or the whole stack."""
        if isinstance(policy, StackValidationPolicy):
            yield stack_urn, StackValidationArgs(stack_resources, props)
            return
        for r in analyzed:
            yield r.urn, ResourceValidationArgs(*_common_args(r, providers), props)

    report = PolicyReport(checked=len(analyzed))

    def reporter(policy: Policy, level: EnforcementLevel, default_urn: str) -> Any:
        def report_violation(message: str, urn: str | None = None) -> None:
            report.violations.append(
                Violation(
                    policy.name, level.value, urn or default_urn, message or policy.description
                )
            )

        return report_violation

    # Every resource policy runs before the stack policies, as in the CLI.
    ordered: list[ResourceValidationPolicy | StackValidationPolicy]
    ordered = [p for p in policies if isinstance(p, ResourceValidationPolicy)]
    ordered += [p for p in policies if isinstance(p, StackValidationPolicy)]
    for policy in ordered:
        level = resolved[policy.name].level
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:  # no remediations here: report as the CLI does
            level = EnforcementLevel.MANDATORY
        for urn, args in runs(policy, dict(resolved[policy.name].properties)):
            try:
                _run(policy.validate(args, reporter(policy, level, urn)))
            except Exception as exc:  # only not_applicable is expected
                why = _is_not_applicable(exc)
                if why is None:
                    raise
                report.not_applicable.append((policy.name, urn, why))
    return report


def _common_args(
    r: RecordedResource, providers: Mapping[str, PolicyProviderResource]
) -> tuple[str, Any, str, str, PolicyResourceOptions, PolicyProviderResource | None]:
    """The leading arguments the SDK's validation args and PolicyResource both take."""
    return r.type, _copy(r.props), r.urn, r.name, _options(r), providers.get(r.provider or "")


def _policy_resources(
    resources: Sequence[RecordedResource], providers: Mapping[str, PolicyProviderResource]
) -> list[PolicyResource]:
    made = {r.urn: PolicyResource(*_common_args(r, providers), None, [], {}) for r in resources}
    for r in resources:
        made[r.urn].parent = made.get(r.parent or "")
        made[r.urn].dependencies = [made[d] for d in r.depends_on if d in made]
    return list(made.values())


def check_plan(plan: Plan, config: Mapping[str, Any] | None = None, **kw: Any) -> PolicyReport:
    return check_resources(plan.resources, config, **kw)


def resources_from_plan_json(data: Any, source: str = "plan") -> list[RecordedResource]:
    """The resources of a saved ``gke-inference plan --format json`` document."""
    if not isinstance(data, Mapping) or not isinstance(data.get("resources"), list):
        raise PlanFileError(
            source,
            "not a plan; expected the JSON object written by "
            '`gke-inference plan --format json` (with a "resources" list)',
        )
    found = []
    for i, item in enumerate(data["resources"]):
        if not isinstance(item, Mapping):
            raise PlanFileError(source, f"resources[{i}] is not an object")
        missing = [k for k in ("urn", "type", "name") if not isinstance(item.get(k), str)]
        if missing:
            raise PlanFileError(source, f"resources[{i}] lacks {', '.join(missing)}")
        inputs = item.get("inputs") or {}
        if not isinstance(inputs, Mapping):
            raise PlanFileError(source, f"resources[{i}].inputs is not an object")
        found.append(
            RecordedResource(
                urn=item["urn"],
                type=item["type"],
                name=item["name"],
                parent=item.get("parent"),
                custom=bool(item.get("custom", True)),
                inputs=dict(inputs),
                protect=bool(item.get("protect", False)),
                provider=item.get("provider"),
                depends_on=[str(d) for d in item.get("dependsOn") or []],
                read=bool(item.get("read", False)),
                options=dict(item.get("options") or {}),
                state=dict(item.get("state") or {}),
            )
        )
    return found


def render_report(report: PolicyReport) -> str:
    """The text block printed after the plan tree (and by ``policy check``)."""
    lines = [
        f"Policy {PACK_NAME}: {report.checked} resources checked, "
        f"{len(report.mandatory)} mandatory and {len(report.advisory)} advisory violations"
    ]
    for v in sorted(report.violations, key=lambda v: (v.level != "mandatory", v.policy, v.urn)):
        resource = v.urn.rsplit("::", 1)[-1]
        kind = v.urn.split("::")[-2].rsplit("$", 1)[-1] if v.urn.count("::") >= 3 else ""
        lines.append(f"  [{v.level}]  {v.policy}  ({resource}: {kind})")
        lines.append(f"      {v.message}")
    return "\n".join(lines)


def load_plan_file(path: str) -> list[RecordedResource]:
    """Resources of a saved plan; ``-`` reads stdin. Raises PlanFileError with a clear message."""
    source = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanFileError(source, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            source, f"not JSON ({exc}); save a plan with `gke-inference plan --format json`"
        ) from None
    return resources_from_plan_json(data, source)

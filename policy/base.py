"""Building blocks shared by the rule modules."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from gke_inference.policy.config import schema

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

ResourceCheck = Callable[[ResourceValidationArgs, ReportViolation], None]
StackCheck = Callable[[StackValidationArgs, ReportViolation], None]


def resource_policy(
    name: str,
    description: str,
    *,
    types: Collection[str],
    check: ResourceCheck,
    level: EnforcementLevel = MANDATORY,
    params: Collection[str] = (),
    severity: Severity = Severity.HIGH,
    remediation: str | None = None,
) -> ResourceValidationPolicy:
    """A resource policy that only looks at ``types`` (other resources pass silently)."""
    wanted = frozenset(types)

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type in wanted:
            check(args, report)

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=schema(*params) if params else None,
        severity=severity,
        remediation_steps=remediation,
        tags=sorted({t.split(":", 1)[0] for t in wanted}),
    )


def stack_policy(
    name: str,
    description: str,
    *,
    check: StackCheck,
    level: EnforcementLevel = MANDATORY,
    params: Collection[str] = (),
    severity: Severity = Severity.MEDIUM,
    remediation: str | None = None,
) -> StackValidationPolicy:
    return StackValidationPolicy(
        name=name,
        description=description,
        validate=check,
        enforcement_level=level,
        config_schema=schema(*params) if params else None,
        severity=severity,
        remediation_steps=remediation,
    )


def where(args: Any) -> str:
    """A short label for messages: ``base-gke-cluster``."""
    return str(getattr(args, "name", "") or "")

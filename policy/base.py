"""Building blocks shared by the rule modules.

Each rule module keeps a :class:`Rules` and registers every check with one of its
decorators, so each policy is defined in one place: its name, level and parameters
in the decorator, its description as the check's docstring, then its logic::

    RULES = Rules()

    @RULES.resource(CLUSTER, "gke-legacy-abac-disabled")
    def _legacy_abac(args: ResourceValidationArgs) -> Messages:
        '''Legacy ABAC authorization is disabled.'''
        if truthy(args.props.get("enableLegacyAbac")):
            yield f"Cluster {args.name} enables legacy ABAC. ..."

A resource check yields the message of each violation (reported on the resource
itself); a stack check gets ``report``, because each of its violations names the
URN of the resource it is about. ``RULES.policies`` keeps definition order, which
is the order the pack lists and runs its policies in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, TypedDict, Unpack

from pulumi_policy import (
    EnforcementLevel,
    Policy,
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

Messages = Iterator[str]
ResourceCheck = Callable[[ResourceValidationArgs], Iterable[str]]
StackCheck = Callable[[StackValidationArgs, ReportViolation], None]


class Options(TypedDict, total=False):
    level: EnforcementLevel  # default MANDATORY
    params: Collection[str]  # the config.PARAMETERS the check reads


class Rules:
    """The policies of one rule module, in the order their checks are defined."""

    def __init__(self) -> None:
        self.policies: list[Policy] = []

    def resource(
        self, types: str | Collection[str], name: str, **options: Unpack[Options]
    ) -> Callable[[ResourceCheck], ResourceCheck]:
        """A policy on the resources of ``types`` (one or several; others pass silently)."""
        wanted = frozenset((types,) if isinstance(types, str) else types)
        tags = sorted({t.split(":", 1)[0] for t in wanted})

        def register(check: ResourceCheck) -> ResourceCheck:
            def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
                if args.resource_type in wanted:
                    for message in check(args):
                        report(message, None)

            settings = _settings(name, check, options)
            self.policies.append(
                ResourceValidationPolicy(
                    validate=validate, severity=Severity.HIGH, tags=tags, **settings
                )
            )
            return check

        return register

    def stack(self, name: str, **options: Unpack[Options]) -> Callable[[StackCheck], StackCheck]:
        """A policy on the whole stack."""

        def register(check: StackCheck) -> StackCheck:
            settings = _settings(name, check, options)
            self.policies.append(
                StackValidationPolicy(validate=check, severity=Severity.MEDIUM, **settings)
            )
            return check

        return register


def _settings(name: str, check: Callable[..., object], options: Options) -> dict[str, Any]:
    """The constructor arguments both kinds of policy take alike."""
    if not check.__doc__:  # python -OO drops docstrings
        raise TypeError(f"policy {name}: its check has no docstring to describe it")
    params = options.get("params", ())
    return {
        "name": name,
        "description": " ".join(check.__doc__.split()),
        "enforcement_level": options.get("level", MANDATORY),
        "config_schema": schema(*params) if params else None,
    }

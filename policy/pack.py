"""The pack's content: every rule, in one list, plus its initial config.

Kept apart from ``__main__.py`` because constructing ``PolicyPack`` starts the
analyzer's gRPC server and never returns; tests and the offline engine import
this module instead.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import Policy

from gke_inference.policy import rules_gke, rules_kubernetes, rules_network, rules_stack
from gke_inference.policy.config import PACK_ENFORCEMENT, PACK_NAME

__all__ = ["ALL_POLICIES", "INITIAL_CONFIG", "PACK_ENFORCEMENT", "PACK_NAME", "policy_named"]

ALL_POLICIES: list[Policy] = [
    *rules_gke.POLICIES,
    *rules_network.POLICIES,
    *rules_kubernetes.POLICIES,
    *rules_stack.POLICIES,
]

#: Programmatic initial config (the CLI layers ``--policy-pack-config`` on top).
#: Levels and parameters live on the policies themselves, so nothing is needed here;
#: the hook stays so an organisation can fork the pack and pin values in code.
INITIAL_CONFIG: dict[str, Any] = {}


def policy_named(name: str) -> Policy:
    for policy in ALL_POLICIES:
        if policy.name == name:
            return policy
    raise KeyError(name)

"""The offline runner itself: isolation between plans in one process."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
from pulumi_gcp import serviceaccount

from gke_inference.offline.planning import plan_platform
from gke_inference.offline.recording import run_offline

REPO = Path(__file__).resolve().parents[1]


class Boom(pulumi.RunError):
    pass


def failing_program() -> None:
    account = serviceaccount.Account("sa", account_id="boom-sa", project="p-123456")

    def explode(_: str) -> str:
        raise Boom("failed inside an apply")

    for _ in range(20):  # leave plenty of outputs pending when it fails
        account.email.apply(lambda e: e.upper())
    account.email.apply(explode)


def test_a_failed_program_does_not_poison_the_next_plan() -> None:
    with pytest.raises(Boom):
        run_offline(failing_program, project="p", stack="s", config={})
    plan = plan_platform("dev", project_dir=REPO)
    assert plan.by_type("gcp:container/cluster:Cluster")


def test_plans_are_independent() -> None:
    first = plan_platform("dev", ["cluster.mode=autopilot"], project_dir=REPO)
    second = plan_platform("dev", project_dir=REPO)
    assert first.outputs["mode"] == "autopilot" and second.outputs["mode"] == "standard"
    assert len(second.by_type("gcp:container/nodePool:NodePool")) > 0

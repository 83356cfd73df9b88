"""Node identity: a dedicated, least-privilege service account for every node."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import organizations, projects, serviceaccount

from gke_inference.core.components import child_options

# What a GKE node needs and nothing more: Google's purpose-built role covers
# logging, monitoring, metadata and autoscaling metrics. Image pulls are
# granted per repository by the registry (ArtifactRegistry.grant_read), not
# project-wide.
NODE_ROLES = ("roles/container.defaultNodeServiceAccount",)


def project_number(project: pulumi.Input[str]) -> pulumi.Output[str]:
    """The project's number: service agents and Workload Identity principals are named by it."""
    return organizations.get_project_output(project_id=project).number


@dataclass
class NodeIdentityArgs:
    project: str
    account_id: str


class NodeIdentity(pulumi.ComponentResource):
    email: pulumi.Output[str]
    member: pulumi.Output[str]

    def __init__(
        self, name: str, args: NodeIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:NodeIdentity", name, None, opts)
        account = serviceaccount.Account(
            f"{name}-sa",
            account_id=args.account_id,
            project=args.project,
            display_name="GKE nodes (gke-inference)",
            description="Least-privilege identity of GKE nodes; replaces the default compute SA",
            opts=child_options(self, opts),
        )
        self.email = account.email
        self.member = account.email.apply(lambda e: f"serviceAccount:{e}")
        for role in NODE_ROLES:
            projects.IAMMember(
                f"{name}-{role.split('/')[-1]}",
                project=args.project,
                role=role,
                member=self.member,
                opts=child_options(self, opts),
            )
        self.register_outputs({"email": self.email})

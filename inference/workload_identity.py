"""Workload Identity principals: IAM for a Kubernetes service account, no GSA keys."""

from __future__ import annotations

import pulumi


def ksa_principal(
    project: pulumi.Input[str],
    number: pulumi.Input[str],
    namespace: pulumi.Input[str],
    service_account: pulumi.Input[str],
) -> pulumi.Output[str]:
    """The direct principal of ``namespace/service_account`` in the cluster's pool."""
    return pulumi.Output.concat(
        "principal://iam.googleapis.com/projects/",
        number,
        "/locations/global/workloadIdentityPools/",
        project,
        ".svc.id.goog/subject/ns/",
        namespace,
        "/sa/",
        service_account,
    )

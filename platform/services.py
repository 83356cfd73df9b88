"""The Google APIs the platform needs, enabled once per project."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import projects

REQUIRED_APIS = (
    "artifactregistry.googleapis.com",
    "binaryauthorization.googleapis.com",
    "cloudkms.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "containerfilesystem.googleapis.com",  # image streaming
    "containersecurity.googleapis.com",  # security posture
    "dns.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "networkservices.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
)


@dataclass
class ProjectServicesArgs:
    project: str


class ProjectServices(pulumi.ComponentResource):
    """Enables the APIs; never disables them on destroy (other stacks may use them)."""

    services: list[projects.Service]

    def __init__(
        self, name: str, args: ProjectServicesArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:ProjectServices", name, None, opts)
        self.services = [
            projects.Service(
                f"{name}-{api.split('.')[0]}",
                project=args.project,
                service=api,
                disable_on_destroy=False,
                disable_dependent_services=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in REQUIRED_APIS
        ]
        self.register_outputs({"apis": list(REQUIRED_APIS)})

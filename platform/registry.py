"""Artifact Registry: the team's Docker repository and pull-through remotes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import artifactregistry

from gke_inference.core.components import child_options
from gke_inference.core.images import UPSTREAM_HOSTS
from gke_inference.core.settings import RegistrySettings


@dataclass
class ArtifactRegistryArgs:
    project: str
    region: str
    settings: RegistrySettings
    immutable_tags: bool
    labels: dict[str, str]


class ArtifactRegistry(pulumi.ComponentResource):
    """Registries are protected: deleting one deletes every image in it."""

    url: pulumi.Output[str]
    remote_urls: dict[str, pulumi.Output[str]]  # upstream kind -> repository URL

    def __init__(
        self, name: str, args: ArtifactRegistryArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:ArtifactRegistry", name, None, opts)
        s = args.settings
        protected = child_options(self, opts, protect=True)
        host = f"{args.region}-docker.pkg.dev/{args.project}"
        self._repositories: list[tuple[str, artifactregistry.Repository]] = []
        images = artifactregistry.Repository(
            f"{name}-images",
            project=args.project,
            location=args.region,
            repository_id=s.repository,
            format="DOCKER",
            mode="STANDARD_REPOSITORY",
            description="Images built by the platform teams (workers, servers)",
            docker_config=artifactregistry.RepositoryDockerConfigArgs(
                immutable_tags=args.immutable_tags
            ),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=s.keep_recent_versions
                    ),
                ),
                artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-old-untagged",
                    action="DELETE",
                    condition=artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than="2592000s"
                    ),
                ),
            ],
            labels=args.labels,
            opts=protected,
        )
        self._repositories.append((s.repository, images))
        self.url = images.repository_id.apply(lambda r: f"{host}/{r}")
        self.remote_urls = {}
        for remote in s.remotes:
            # Docker Hub is a known public repository; the others are custom upstream URIs.
            docker = (
                artifactregistry.RepositoryRemoteRepositoryConfigDockerRepositoryArgs(
                    public_repository="DOCKER_HUB"
                )
                if remote.upstream == "docker-hub"
                else artifactregistry.RepositoryRemoteRepositoryConfigDockerRepositoryArgs(
                    custom_repository=artifactregistry.RepositoryRemoteRepositoryConfigDockerRepositoryCustomRepositoryArgs(
                        uri=f"https://{UPSTREAM_HOSTS[remote.upstream]}"
                    )
                )
            )
            repo = artifactregistry.Repository(
                f"{name}-{remote.name}",
                project=args.project,
                location=args.region,
                repository_id=remote.name,
                format="DOCKER",
                mode="REMOTE_REPOSITORY",
                description=f"Pull-through cache of {remote.upstream}",
                remote_repository_config=artifactregistry.RepositoryRemoteRepositoryConfigArgs(
                    docker_repository=docker
                ),
                labels=args.labels,
                opts=protected,
            )
            self._repositories.append((remote.name, repo))
            # Keyed by upstream, so workloads find "the Docker Hub cache" whatever it is named.
            self.remote_urls[remote.upstream] = repo.repository_id.apply(lambda r: f"{host}/{r}")
        self.register_outputs({"url": self.url, "remotes": self.remote_urls})

    def grant_read(
        self, name: str, member: pulumi.Input[str]
    ) -> list[artifactregistry.RepositoryIamMember]:
        """Let ``member`` pull from every repository here (and nothing else)."""
        return [
            artifactregistry.RepositoryIamMember(
                f"{name}-{key}",
                project=repo.project,
                location=repo.location,
                repository=repo.name,
                role="roles/artifactregistry.reader",
                member=member,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for key, repo in self._repositories
        ]

"""Reaching the cluster: a kubeconfig that authenticates with gke-gcloud-auth-plugin (no
token stored), and the one way this project builds a Kubernetes provider from it."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import yaml


def kubernetes_provider(
    name: str,
    cluster_name: pulumi.Input[str],
    kubeconfig: pulumi.Input[str],
    parent: pulumi.Resource | None = None,
) -> k8s.Provider:
    """A provider for this cluster only, never the ambient kubeconfig (the platform's
    add-ons and every workload stack use it).

    ``cluster_identifier`` is the cluster's name, so a new endpoint or CA (an
    unrelated cluster update) changes the kubeconfig without replacing every
    Kubernetes object the provider manages.
    """
    return k8s.Provider(
        name,
        kubeconfig=kubeconfig,
        cluster_identifier=cluster_name,
        enable_server_side_apply=True,
        delete_unreachable=False,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def render_kubeconfig(name: str, endpoint: str, ca_certificate: str, use_dns_endpoint: bool) -> str:
    """Kubeconfig text for ``endpoint``.

    The DNS endpoint presents a publicly trusted certificate, so no CA is
    embedded for it; the IP endpoint needs the cluster CA.
    """
    cluster: dict[str, str] = {"server": f"https://{endpoint}"}
    if not use_dns_endpoint:
        cluster["certificate-authority-data"] = ca_certificate
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "users": [
            {
                "name": name,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "gke-gcloud-auth-plugin",
                        "installHint": "Install gke-gcloud-auth-plugin: "
                        "gcloud components install gke-gcloud-auth-plugin",
                        "provideClusterInfo": True,
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)

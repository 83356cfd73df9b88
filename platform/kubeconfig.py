"""A kubeconfig that authenticates with gke-gcloud-auth-plugin (no token stored)."""

from __future__ import annotations

import yaml


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

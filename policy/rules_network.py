"""Network, storage and key-management rules."""

from __future__ import annotations

import json
import re
from typing import Any

from pulumi_policy import ResourceValidationArgs

from gke_inference.policy.base import Messages, Rules
from gke_inference.policy.config import param
from gke_inference.policy.props import items, obj, truthy

FIREWALL = "gcp:compute/firewall:Firewall"
BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_IAM_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
BUCKET_IAM_BINDING = "gcp:storage/bucketIAMBinding:BucketIAMBinding"
BUCKET_IAM_POLICY = "gcp:storage/bucketIAMPolicy:BucketIAMPolicy"
BUCKET_ACL = "gcp:storage/bucketAccessControl:BucketAccessControl"
CRYPTO_KEY = "gcp:kms/cryptoKey:CryptoKey"

PUBLIC_RANGES = ("0.0.0.0/0", "::/0")
ADMIN_PORTS = {22: "SSH", 3389: "RDP"}
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

RULES = Rules()


# --------------------------------------------------------------------------- firewall


def _port_hits(ports: list[Any]) -> list[int]:
    """Admin ports covered by a firewall ``ports`` list ("22", "20-30"); none = all ports."""
    if not ports:
        return sorted(ADMIN_PORTS)
    hits: set[int] = set()
    for entry in ports:
        text = str(entry).strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", text)
        if not match:
            continue
        low = int(match.group(1))
        high = int(match.group(2) or low)
        hits.update(p for p in ADMIN_PORTS if low <= p <= high)
    return sorted(hits)


@RULES.resource(FIREWALL, "firewall-no-public-admin-ingress")
def _firewall(args: ResourceValidationArgs) -> Messages:
    """No ingress firewall rule opens SSH (tcp/22) or RDP (tcp/3389) to 0.0.0.0/0 or ::/0."""
    props = args.props
    if str(props.get("direction") or "INGRESS").upper() != "INGRESS" or truthy(
        props.get("disabled")
    ):
        return
    ranges = [str(r) for r in items(props.get("sourceRanges"))]
    has_other_source = items(props.get("sourceTags")) or items(props.get("sourceServiceAccounts"))
    # An ingress rule without any source applies to 0.0.0.0/0 (Compute Engine default).
    public = [r for r in ranges if r in PUBLIC_RANGES] or (
        ["0.0.0.0/0 (no source given)"] if not ranges and not has_other_source else []
    )
    if not public:
        return
    exposed: set[int] = set()
    for allow in items(props.get("allows")):
        protocol = str(obj(allow).get("protocol", "")).lower()
        if protocol in ("tcp", "6", "all"):
            exposed.update(_port_hits(items(obj(allow).get("ports"))))
    if exposed:
        names = ", ".join(f"{ADMIN_PORTS[p]} (tcp/{p})" for p in sorted(exposed))
        yield (
            f"Firewall {args.name} opens {names} to {', '.join(public)}. Restrict sourceRanges "
            "to your admin networks or use IAP TCP forwarding (35.235.240.0/20)."
        )


# --------------------------------------------------------------------------- storage


@RULES.resource(BUCKET, "storage-bucket-uniform-access")
def _bucket_uniform(args: ResourceValidationArgs) -> Messages:
    """Cloud Storage buckets use uniform bucket-level access (IAM only, no object ACLs)."""
    if not truthy(args.props.get("uniformBucketLevelAccess")):
        yield (
            f"Bucket {args.name} allows per-object ACLs (the provider default). "
            "Set uniformBucketLevelAccess to true."
        )


def _public_members(args: ResourceValidationArgs) -> list[str]:
    props = args.props
    if args.resource_type == BUCKET_IAM_MEMBER:
        members = [props.get("member")]
    elif args.resource_type == BUCKET_IAM_BINDING:
        members = items(props.get("members"))
    elif args.resource_type == BUCKET_ACL:
        members = [props.get("entity")]
    else:
        try:
            policy = json.loads(str(props.get("policyData") or "{}"))
        except json.JSONDecodeError:
            return []
        members = [
            m for b in items(obj(policy).get("bindings")) for m in items(obj(b).get("members"))
        ]
    return sorted({str(m) for m in members if m in PUBLIC_MEMBERS})


@RULES.resource(
    (BUCKET_IAM_MEMBER, BUCKET_IAM_BINDING, BUCKET_IAM_POLICY, BUCKET_ACL),
    "storage-bucket-no-public-access",
)
def _bucket_public(args: ResourceValidationArgs) -> Messages:
    """No bucket IAM member, binding, policy or ACL grants allUsers or allAuthenticatedUsers."""
    public = _public_members(args)
    if public:
        yield (
            f"{args.name} grants bucket access to {', '.join(public)} (anyone on the "
            "internet). Grant the role to specific service accounts or groups instead."
        )


# --------------------------------------------------------------------------- KMS


@RULES.resource(CRYPTO_KEY, "kms-key-protected")
def _key_protected(args: ResourceValidationArgs) -> Messages:
    """Cloud KMS keys are protected from deletion by Pulumi (resource option protect)."""
    if not args.opts.protect:
        yield (
            f"KMS key {args.name} can be destroyed by `pulumi destroy`, which makes "
            "everything it encrypted unreadable. Register it with "
            "ResourceOptions(protect=True)."
        )


def rotation_seconds(value: Any) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value or "").strip())
    return float(match.group(1)) if match else None


@RULES.resource(CRYPTO_KEY, "kms-key-rotation-period", params=("maxRotationDays",))
def _key_rotation(args: ResourceValidationArgs) -> Messages:
    """Symmetric Cloud KMS keys rotate automatically at least every maxRotationDays days."""
    purpose = args.props.get("purpose") or "ENCRYPT_DECRYPT"
    if purpose != "ENCRYPT_DECRYPT":
        args.not_applicable(f"{purpose} keys cannot rotate automatically")
    max_days = int(param(args, "maxRotationDays"))
    value = args.props.get("rotationPeriod")
    seconds = rotation_seconds(value)
    if seconds is None:
        yield (
            f"KMS key {args.name} never rotates (rotationPeriod {value!r}). Set "
            f"rotationPeriod to at most '{max_days * 86400}s' ({max_days} days)."
        )
    elif seconds > max_days * 86400:
        yield (
            f"KMS key {args.name} rotates every {seconds / 86400:g} days. Set "
            f"rotationPeriod to at most '{max_days * 86400}s' ({max_days} days)."
        )


POLICIES = RULES.policies

"""Security controls: Cloud KMS for secrets encryption, Binary Authorization policy."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import binaryauthorization, kms

from gke_inference.core.admission import admission_patterns
from gke_inference.core.components import child_options
from gke_inference.platform.identity import project_number

SECONDS_PER_DAY = 86_400


@dataclass
class SecretsEncryptionArgs:
    project: str
    region: str
    name: str
    rotation_days: int
    labels: dict[str, str]


class SecretsEncryption(pulumi.ComponentResource):
    """A KMS key for GKE application-layer secrets encryption (etcd).

    Key rings and keys cannot really be deleted in Cloud KMS, and losing the key
    makes every Secret unreadable, so both are protected.
    """

    key_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: SecretsEncryptionArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:SecretsEncryption", name, None, opts)
        ring = kms.KeyRing(
            f"{name}-ring",
            name=f"{args.name}-keyring",
            project=args.project,
            location=args.region,
            opts=child_options(self, opts, protect=True),
        )
        key = kms.CryptoKey(
            f"{name}-key",
            name="gke-secrets",
            key_ring=ring.id,
            purpose="ENCRYPT_DECRYPT",
            rotation_period=f"{args.rotation_days * SECONDS_PER_DAY}s",
            labels=args.labels,
            opts=child_options(self, opts, protect=True),
        )
        # The GKE service agent encrypts and decrypts with the key on the
        # cluster's behalf; nobody else is granted anything.
        number = project_number(args.project)
        agent = number.apply(
            lambda n: f"serviceAccount:service-{n}@container-engine-robot.iam.gserviceaccount.com"
        )
        self.grant = kms.CryptoKeyIAMMember(
            f"{name}-gke-agent",
            crypto_key_id=key.id,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=agent,
            opts=child_options(self, opts),
        )
        self.key_id = key.id
        self.register_outputs({"keyId": self.key_id})


@dataclass
class BinaryAuthorizationArgs:
    project: str
    region: str


class BinaryAuthorization(pulumi.ComponentResource):
    """Project policy: only images from this project's Artifact Registry may run.

    Vendor images (vLLM, ComfyUI, ...) are pulled through the registry's remote
    repositories, so they match the allowlist too and get scanned on the way in.
    """

    def __init__(
        self, name: str, args: BinaryAuthorizationArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:BinaryAuthorization", name, None, opts)
        binaryauthorization.Policy(
            f"{name}-policy",
            project=args.project,
            description="gke-inference: allow this project's Artifact Registry only",
            global_policy_evaluation_mode="ENABLE",
            admission_whitelist_patterns=[
                binaryauthorization.PolicyAdmissionWhitelistPatternArgs(name_pattern=pattern)
                for pattern in admission_patterns(args.project, args.region)
            ],
            default_admission_rule=binaryauthorization.PolicyDefaultAdmissionRuleArgs(
                evaluation_mode="ALWAYS_DENY",
                enforcement_mode="ENFORCED_BLOCK_AND_AUDIT_LOG",
            ),
            opts=child_options(self, opts),
        )
        self.register_outputs({})

"""Entry point of the CrossGuard pack: `pulumi preview --policy-pack policy`.

Only this file constructs PolicyPack (it starts the analyzer server and never
returns); the rules live in importable modules, see pack.py.
"""

from pulumi_policy import PolicyPack

from gke_inference.policy.pack import ALL_POLICIES, INITIAL_CONFIG, PACK_ENFORCEMENT, PACK_NAME

PolicyPack(
    name=PACK_NAME,
    policies=ALL_POLICIES,
    enforcement_level=PACK_ENFORCEMENT,
    initial_config=INITIAL_CONFIG,
    description="Security and operability baseline for the GKE inference platform.",
)

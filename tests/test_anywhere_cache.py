"""Anywhere Cache on the model bucket: zonal SSD read caches where the model servers run."""

from __future__ import annotations

from pathlib import Path

import pytest

from gke_inference.core.errors import SettingsError
from gke_inference.offline.planning import plan_platform
from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import PlanMocks, RecordingMonitor

REPO = Path(__file__).resolve().parents[1]
CACHE = "gcp:storage/anywhereCache:AnywhereCache"
BUCKET = "gcp:storage/bucket:Bucket"
SETTING = "inference.modelBucket.anywhereCache"


def test_one_cache_per_serving_zone_on_the_model_bucket() -> None:
    plan = plan_platform(
        "prod",
        [f"{SETTING}.zones[0]=us-central1-a", f"{SETTING}.zones[1]=us-central1-c"],
        project_dir=REPO,
    )
    caches = plan.by_type(CACHE)
    (bucket,) = [b for b in plan.by_type(BUCKET) if b.name.endswith("-models-bucket")]
    assert sorted(c.inputs["zone"] for c in caches) == ["us-central1-a", "us-central1-c"]
    for cache in caches:
        assert cache.inputs["bucket"] == bucket.inputs["name"]
        assert cache.inputs["ttl"] == f"{7 * 24 * 3600}s"  # the default: a week
        assert bucket.urn in cache.depends_on
        assert cache.parent == bucket.parent  # children of the ModelBucket component
        assert "admissionPolicy" not in cache.inputs  # deprecated: one behaviour left
    assert check_resources(plan.resources, None, source="default").mandatory == []


def test_no_cache_unless_asked() -> None:
    assert plan_platform("dev", project_dir=REPO).by_type(CACHE) == []


@pytest.mark.parametrize(
    ("stack", "overrides", "path", "needle"),
    [
        ("dev", ["zones[0]=us-central1-a"], "zones[0]", "not in region 'us-east4'"),
        ("dev", ["zones[0]=us-east4-a", "zones[1]=us-east4-a"], "zones", "listed twice"),
        ("dev", ["zones[0]=us-east4-a", "ttlHours=200"], "ttlHours", "168"),
        ("dev", ["zones[0]=us-east4-a", "ttlHours=0"], "ttlHours", "1"),
        # prod's nodes run in us-central1-a/b/c: a cache in -f would serve no read
        ("prod", ["zones[0]=us-central1-f"], "zones[0]", "has no nodes of this cluster"),
    ],
)
def test_bad_cache_settings_are_refused_before_anything_is_registered(
    stack: str, overrides: list[str], path: str, needle: str
) -> None:
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(SettingsError) as info:
        plan_platform(
            stack, [f"{SETTING}.{o}" for o in overrides], project_dir=REPO, monitor=monitor
        )
    text = str(info.value)
    assert f"{SETTING}.{path}" in text and needle in text, text
    assert {r.type for r in monitor.records.values()} <= {"pulumi:pulumi:Stack"}

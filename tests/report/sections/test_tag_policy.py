"""Tag policy readings: what a reference names, which tags moved, which are mutable."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pandas as pd
import pytest
from registry_lifecycle.report.frames import parse_reference
from registry_lifecycle.report.sections.tag_policy import (
    repointed_tags,
    workloads_by_tag,
)

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("ref, expected", [
    (f"image-registry.openshift-image-registry.svc:5000/shop/web@{D}",
     ("image-registry.openshift-image-registry.svc:5000", "shop/web", None, D)),
    ("image-registry.openshift-image-registry.svc:5000/shop/web:v1.2.3",
     ("image-registry.openshift-image-registry.svc:5000", "shop/web", "v1.2.3", None)),
    ("quay.io/org/tool", ("quay.io", "org/tool", "latest", None)),          # no tag means latest
    ("ImageStreamTag shop/web:prod", (None, "shop/web", "prod", None)),
    (f"ImageStreamImage shop/web@{D}", (None, "shop/web", None, D)),
])
def test_references_are_read_as_the_runtime_and_openshift_read_them(ref, expected):
    assert parse_reference(ref) == expected


def _tag(ns, stream, tag, revision, created):
    return {"namespace": ns, "imagestream": stream, "tag": tag, "revision": revision,
            "digest": f"sha256:{revision:064x}", "created_at": pd.Timestamp(created, tz="UTC")}


def test_a_tag_moved_in_the_period_is_reported_and_a_moved_release_tag_is_flagged():
    tags = pd.DataFrame([
        _tag("shop-prod", "web", "prod", 0, "2026-08-10"), _tag("shop-prod", "web", "prod", 1, "2026-05-01"),
        _tag("shop-prod", "web", "v1.2.3", 0, "2026-09-01"), _tag("shop-prod", "web", "v1.2.3", 1, "2026-08-01"),
        _tag("shop-prod", "web", "v1.2.4", 0, "2026-09-05"),                      # first push: not a move
        _tag("shop-prod", "web", "old", 0, "2026-05-01"), _tag("shop-prod", "web", "old", 1, "2026-04-01"),
        _tag("shop-prod", "web", "sha256-" + "a" * 64 + ".sig", 0, "2026-09-01"),
        _tag("shop-prod", "web", "sha256-" + "a" * 64 + ".sig", 1, "2026-08-01"),   # re-signed: left out
    ])
    moved = repointed_tags(tags, date(2026, 7, 1), date(2026, 9, 30), {"shop-prod": "prod"}, [r"^v?\d+\.\d+\.\d+$"])
    assert set(moved["tag"]) == {"prod", "v1.2.3"}
    assert moved.set_index("tag")["release_tag"].to_dict() == {"prod": False, "v1.2.3": True}
    assert moved.set_index("tag")["repoints"]["v1.2.3"] == 1    # pushed in August, moved in September


def test_a_workload_on_a_tag_that_has_moved_runs_a_mutable_tag():
    tags = pd.DataFrame([_tag("shop-prod", "web", "prod", 0, "2026-08-10"), _tag("shop-prod", "web", "prod", 1, "2026-05-01"),
                         _tag("shop-prod", "web", "v1", 0, "2026-05-01")])
    observed = pd.Timestamp(datetime(2026, 9, 30, tzinfo=timezone.utc))
    refs = pd.DataFrame([{"cluster": "c", "namespace": "shop-prod", "kind": "Deployment", "name": name,
                          "container": "web", "image_ref": f"image-registry:5000/shop-prod/web{ref}", "digest": None,
                          "source": "template", "active": True, "observed_at": observed}
                         for name, ref in (("a", ":prod"), ("b", ":v1"), ("c", ""), ("d", f"@{D}"))])
    found = workloads_by_tag(refs, tags, {"shop-prod": "prod"}).set_index("name")
    assert "d" not in found.index, "pinned by digest"
    assert found["mutable"].to_dict() == {"a": True, "b": False, "c": True}
    assert found["latest"].to_dict() == {"a": False, "b": False, "c": True}

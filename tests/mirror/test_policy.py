"""The policy's mirror section: mistakes that would copy to the wrong place are refused on load."""
from __future__ import annotations

import pytest
from registry_lifecycle.config import PolicyError, load_policy, policy_with

TARGET = {"name": "eu-west", "url": "https://mirror.example.com", "region": "eu-west-1", "connection_id": "c",
          "egress_cost_per_gb": 0.02, "storage_cost_per_gb_month": 0.023}


def with_mirror(**mirror):
    return policy_with(load_policy(), {"mirror": mirror})


def test_the_packaged_default_has_no_targets_and_plans_nothing():
    assert load_policy().mirror.targets == [] and load_policy().mirror.dr_rules == []


@pytest.mark.parametrize("mirror, words", [
    ({"targets": [TARGET, TARGET]}, "two targets are called 'eu-west'"),
    ({"targets": [TARGET], "dr_rules": [{"name": "r", "match": {"env": "prod"}, "targets": ["moon"]}]},
     "unknown target"),
    ({"targets": [TARGET], "dr_rules": [{"name": "r", "match": {"env": "prod"}, "min_registries": 3}]},
     "only the source and 1 target"),
    ({"targets": [{**TARGET, "url": "mirror.example.com/v2"}]}, "root URL"),
    ({"targets": [{**TARGET, "egress_cost_per_gb": -1}]}, "greater than or equal to 0"),
    ({"dr_rules": [{"name": "r", "match": {}}]}, "give env, namespace and/or cluster"),
    ({"targets": [{**TARGET, "password": "x"}]}, "secrets and URLs do not belong in the policy"),
])
def test_a_mistake_in_the_mirror_section_is_refused_with_its_path(mirror, words):
    with pytest.raises(PolicyError, match=words):
        with_mirror(**mirror)


def test_deny_wins_over_allow_and_an_unlisted_cluster_is_local():
    policy = with_mirror(allow=["team-*"], deny=["*-dev/*"], source_region="us-east-1",
                         cluster_regions={"nonprod": "eu-west-1"}).mirror
    assert policy.denied_by("team-a-dev/api") == "deny *-dev/*"
    assert policy.denied_by("openshift/ubi9") == "no allow pattern matches"
    assert policy.denied_by("team-a-prod/api") is None
    assert policy.region_of("nonprod") == "eu-west-1" and policy.region_of("elsewhere") == "us-east-1"

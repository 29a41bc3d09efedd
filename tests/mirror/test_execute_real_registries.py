"""An approved plan executed against real registries: resumable, audited, and honest about failures.

What a platform engineer relies on: a copy cut off half-way is never recorded as copied, the
next run finishes it without sending again what arrived, and a target that refuses the
credentials, cannot be reached or rewrites digests stops with a message naming it, while the
other targets carry on.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from registry_lifecycle.mirror.audit import (
    ALREADY_PRESENT,
    COPIED,
    FAILED,
    REFUSED_EXPIRED,
    REFUSED_NOT_APPROVED,
    SKIPPED_NOT_CHOSEN,
    SKIPPED_TARGET_FAILED,
    MirrorAuditLog,
)
from registry_lifecycle.mirror.errors import ApprovalError
from registry_lifecycle.mirror.execute import Approval, execute_mirror_plan
from registry_lifecycle.mirror.verify import verify_copies
from registry_lifecycle.sources.registry import RegistryClient

from tests.fixtures.components import DockerRegistry, free_port
from tests.mirror.conftest import Seeded, mirror_policy, plan_lines
from tests.mirror.fault_proxy import Fault

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 28)


def client(url: str, **kwargs) -> RegistryClient:
    return RegistryClient(url, max_retries=1, backoff=0.01, timeout=5, **kwargs)


def approve(plan, *, targets=None, plan_id=None) -> Approval:
    return Approval(plan_id=plan_id or plan["plan_id"].iloc[0], approved_by="alice",
                    approved_at=datetime.now(timezone.utc), targets=targets)


def lines_for(seeded: Seeded, target: str = "eu-west"):
    wanted = [("team-a/frontend", "v2"), ("team-b/backend", "v1"), ("platform/tools", "1.0"), ("team-c/big", "v1")]
    return plan_lines([{"digest": seeded.find(repository, tag).digest, "repository": repository, "target": target}
                       for repository, tag in wanted])


def test_an_interrupted_copy_is_not_reported_as_done_and_the_next_run_finishes_it(
        seeded_source: Seeded, source_registry: DockerRegistry, target_registry: DockerRegistry, proxy_factory, lake):
    plan = lines_for(seeded_source)
    policy = mirror_policy({"eu-west": target_registry.url})
    big = seeded_source.big
    proxy = proxy_factory(source_registry)
    # The big layer's download breaks off every time during the first run.
    proxy.add(Fault("cut_response", method="GET", path=f"/blobs/{big.layers[0].digest}$", after_bytes=300_000,
                    times=None))
    audit = MirrorAuditLog(lake, DAY, "run-1")
    with client(proxy.url) as source, client(target_registry.url) as target:
        first = execute_mirror_plan(plan, approval=approve(plan), policy=policy, source=source,
                                    targets={"eu-west": target}, audit=audit)
        assert first.outcomes() == {COPIED: 3, FAILED: 1}
        assert not first.complete
        failure = first.records[first.records["outcome"] == FAILED].iloc[0]
        assert failure["digest"] == big.digest and "broke off" in failure["detail"]
        # Nothing of the unit is announced on the target: its root manifest is not there.
        assert target.manifest_digest("team-c/big", big.digest) is None
        uploaded_by_first = {blob.digest for blob in big.blobs if target.blob_size("team-c/big", blob.digest)}
        assert uploaded_by_first and big.layers[0].digest not in uploaded_by_first

    proxy.faults.clear()
    with client(proxy.url) as source, client(target_registry.url) as target:
        second = execute_mirror_plan(plan, approval=approve(plan), policy=policy, source=source,
                                     targets={"eu-west": target}, audit=MirrorAuditLog(lake, DAY, "run-2"))
        assert second.outcomes() == {COPIED: 1}            # the three done ones are skipped by the audit log
        assert second.complete
        stats = second.stats["eu-west"]
        assert stats["blobs_present"] == len(uploaded_by_first)   # what arrived in run 1 is not sent again
        assert stats["bytes_uploaded"] == sum(blob.size for blob in big.blobs if blob.digest not in uploaded_by_first)
        log = MirrorAuditLog(lake, DAY, "check").read(plan["plan_id"].iloc[0])
        verification = verify_copies(log, source=source, targets={"eu-west": target},
                                     target_settings={t.name: t for t in policy.mirror.targets},
                                     source_repositories=dict(zip(plan["digest"], plan["source_repository"])),
                                     deep=True)
    assert verification.ok, verification.problems
    assert verification.checked == 4


def test_a_rerun_of_a_finished_plan_copies_nothing(seeded_source: Seeded, source_registry: DockerRegistry,
                                                   target_registry: DockerRegistry, lake):
    plan = lines_for(seeded_source)
    policy = mirror_policy({"eu-west": target_registry.url})
    with client(source_registry.url) as source, client(target_registry.url) as target:
        execute_mirror_plan(plan, approval=approve(plan), policy=policy, source=source, targets={"eu-west": target},
                            audit=MirrorAuditLog(lake, DAY, "run-1"))
        # A lost audit log (another lake) still finds every copy on the target: idempotent, not repeated.
        again = execute_mirror_plan(plan, approval=approve(plan), policy=policy, source=source,
                                    targets={"eu-west": target}, audit=MirrorAuditLog(lake.__class__(
                                        str(lake.url).removeprefix("file://") + "-other"), DAY, "run-2"))
    assert again.outcomes() == {ALREADY_PRESENT: 4}
    assert again.stats["eu-west"]["bytes_uploaded"] == 0


def test_without_an_approval_for_this_exact_plan_nothing_is_copied(seeded_source: Seeded,
                                                                   source_registry: DockerRegistry,
                                                                   target_registry: DockerRegistry, lake):
    plan = lines_for(seeded_source)
    policy = mirror_policy({"eu-west": target_registry.url})
    audit = MirrorAuditLog(lake, DAY, "run-1")
    stale = plan_lines([{"digest": d, "repository": r, "target": "eu-west"}
                        for d, r in zip(plan["digest"], plan["repository"])], plan_id="plan-old",
                       created_at=datetime.now(timezone.utc) - timedelta(days=5))
    with client(source_registry.url) as source, client(target_registry.url) as target:
        for frame, approval, outcome in ((plan, None, REFUSED_NOT_APPROVED),
                                         (plan, approve(plan, plan_id="another-plan"), REFUSED_NOT_APPROVED),
                                         (stale, approve(stale), REFUSED_EXPIRED)):
            with pytest.raises(ApprovalError):
                execute_mirror_plan(frame, approval=approval, policy=policy, source=source,
                                    targets={"eu-west": target}, audit=audit)
            refused = audit.read(frame["plan_id"].iloc[0])
            assert set(refused["outcome"]) == {outcome}
        assert all(target.manifest_digest(r, d) is None for d, r in zip(plan["digest"], plan["repository"]))


@pytest.mark.parametrize("fault", ["auth", "unreachable", "rewrites_digests"])
def test_a_bad_target_fails_clearly_and_the_other_target_still_gets_its_copies(
        fault: str, seeded_source: Seeded, source_registry: DockerRegistry, target_registry: DockerRegistry,
        docker_registry_htpasswd: DockerRegistry, proxy_factory, lake):
    if fault == "auth":
        bad = client(docker_registry_htpasswd.url, username="reglife", password="wrong-password")
        expected = "refused"
    elif fault == "unreachable":
        bad = client(f"http://127.0.0.1:{free_port()}")
        expected = "connection failed"
    else:
        proxy = proxy_factory(docker_registry_htpasswd)
        proxy.add(Fault("rewrite_manifest", method="PUT", path=r"/manifests/", times=None))
        bad = client(proxy.url, username="reglife", password="s3cret-for-tests")
        expected = "under digest"
    plan = lines_for(seeded_source, "bad")
    plan = plan_lines([{"digest": d, "repository": r, "target": t} for t in ("bad", "good")
                       for d, r in zip(plan["digest"], plan["repository"])])
    policy = mirror_policy({"bad": "http://bad.example", "good": target_registry.url})
    with client(source_registry.url) as source, client(target_registry.url) as good, bad:
        result = execute_mirror_plan(plan, approval=approve(plan), policy=policy, source=source,
                                     targets={"bad": bad, "good": good}, audit=MirrorAuditLog(lake, DAY, "run-1"))
    records = result.records
    on_bad = records[records["target"] == "bad"]
    assert set(on_bad["outcome"]) <= {FAILED, SKIPPED_TARGET_FAILED} and (on_bad["outcome"] == FAILED).any()
    assert "mirror target bad" in result.failed_targets["bad"] and expected in result.failed_targets["bad"]
    said = " ".join([*result.failed_targets.values(), *records["detail"].dropna()])
    assert "wrong-password" not in said and "s3cret-for-tests" not in said      # secrets never reach the audit log
    assert set(records.loc[records["target"] == "good", "outcome"]) == {COPIED}
    assert not result.complete
    if fault == "rewrites_digests":
        with docker_registry_htpasswd.client() as http:
            # The rewritten manifest is stored under another digest; the approved digest is not there.
            assert http.head(f"/v2/team-a/frontend/manifests/{plan['digest'].iloc[0]}").status_code == 404


def test_the_approver_can_leave_a_target_out(seeded_source: Seeded, source_registry: DockerRegistry,
                                            target_registry: DockerRegistry, lake):
    plan = lines_for(seeded_source)
    plan = plan_lines([{"digest": d, "repository": r, "target": t} for t in ("eu-west", "dr")
                       for d, r in zip(plan["digest"], plan["repository"])])
    policy = mirror_policy({"eu-west": target_registry.url, "dr": "http://dr.example"})
    with client(source_registry.url) as source, client(target_registry.url) as target:
        result = execute_mirror_plan(plan, approval=approve(plan, targets=frozenset({"eu-west"})), policy=policy,
                                     source=source, targets={"eu-west": target}, audit=MirrorAuditLog(lake, DAY, "r"))
    assert result.outcomes() == {COPIED: 4, SKIPPED_NOT_CHOSEN: 4}

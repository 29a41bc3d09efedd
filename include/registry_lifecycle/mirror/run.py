"""The mirror steps as `reglife` runs them outside Airflow: clients from the environment, plan, copy.

Credentials come from the environment, never from the policy: the source registry from
`REGLIFE_REGISTRY_URL` and `REGLIFE_REGISTRY_USERNAME/PASSWORD` (as `reglife extract`), each
target from its policy URL and `REGLIFE_MIRROR_<NAME>_USERNAME/PASSWORD` (`<NAME>` the
target's name in upper case, `-` as `_`); `REGLIFE_CA_BUNDLE` for a private CA.
"""
from __future__ import annotations

import json
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ..config import MirrorTarget, Policy
from ..lake import Lake
from ..sources.registry import RegistryClient


def _env_name(target: MirrorTarget) -> str:
    return "REGLIFE_MIRROR_" + target.name.upper().replace("-", "_")


def target_client(target: MirrorTarget, policy: Policy, *, username: str | None = None, password: str | None = None,
                  verify: bool | str = True) -> RegistryClient:
    transfer = policy.mirror.transfer
    return RegistryClient(target.url, username=username, password=password, verify=verify,
                          concurrency=max(transfer.concurrency * 2, 2), max_retries=transfer.max_retries,
                          timeout=transfer.timeout_seconds, referrers=False)


def target_clients_from_environment(policy: Policy) -> dict[str, RegistryClient]:
    verify: bool | str = os.environ.get("REGLIFE_CA_BUNDLE") or True
    return {target.name: target_client(target, policy, username=os.environ.get(f"{_env_name(target)}_USERNAME"),
                                       password=os.environ.get(f"{_env_name(target)}_PASSWORD"), verify=verify)
            for target in policy.mirror.targets}


def source_client_from_environment(policy: Policy) -> RegistryClient:
    url = os.environ.get("REGLIFE_REGISTRY_URL")
    if not url:
        raise SystemExit("reglife: set REGLIFE_REGISTRY_URL (the source registry's v2 API) to copy from it")
    transfer = policy.mirror.transfer
    return RegistryClient(url, username=os.environ.get("REGLIFE_REGISTRY_USERNAME"),
                          password=os.environ.get("REGLIFE_REGISTRY_PASSWORD"),
                          verify=os.environ.get("REGLIFE_CA_BUNDLE") or policy.sources.registry.verify_tls,
                          concurrency=max(transfer.concurrency * 2, 2), max_retries=transfer.max_retries,
                          timeout=transfer.timeout_seconds)


def plan_command(lake_url: str, day: date, policy: Policy, *, as_json: bool, out: Path | None,
                 assume_empty_targets: bool, run_id: str | None = None) -> int:
    """`reglife mirror-plan`: plan, publish to the lake, print, and write the exports to `out`."""
    from ..lake import LakeNotFound
    from .errors import TargetError
    from .exports import write_exports
    from .plan import plan_day, publish
    from .target_state import assume_empty

    lake = Lake(lake_url)
    clients = {} if assume_empty_targets else target_clients_from_environment(policy)
    try:
        plan = plan_day(lake, day, policy, state=assume_empty() if assume_empty_targets else None, clients=clients)
    except (LakeNotFound, TargetError) as error:
        raise SystemExit(f"reglife mirror-plan: {error}") from None
    finally:
        for client in clients.values():
            client.close()
    publish(lake, plan, run_id or f"manual__mirror__{day.isoformat()}")
    summary: dict[str, Any] = plan.as_dict()
    if out is not None:
        summary["exports"] = [str(path) for path in write_exports(plan, policy, out)]
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(plan.summary_markdown())
        for path in summary.get("exports", []):
            print(f"wrote {path}")
    return 0


def copy_command(lake_url: str, day: date, policy: Policy, *, plan_id: str, approved_by: str,
                 targets: list[str] | None, as_json: bool, deep: bool = False) -> int:
    """`reglife mirror-copy`: execute an approved plan from the lake, then verify every copy."""
    from .audit import MirrorAuditLog
    from .execute import Approval, execute_mirror_plan
    from .plan import read_plan
    from .verify import verify_copies

    lake = Lake(lake_url)
    try:
        plan = read_plan(lake, day, plan_id)
    except LookupError as error:
        raise SystemExit(f"reglife mirror-copy: {error}") from None
    approval = Approval(plan_id=plan_id, approved_by=approved_by, approved_at=datetime.now(timezone.utc),
                        targets=frozenset(targets) if targets else None)
    run_id = f"manual__mirror__{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    audit = MirrorAuditLog(lake, datetime.now(timezone.utc).date(), run_id)
    clients = target_clients_from_environment(policy)
    with source_client_from_environment(policy) as source:
        try:
            result = execute_mirror_plan(plan, approval=approval, policy=policy, source=source, targets=clients,
                                         audit=audit)
            verification = verify_copies(audit.read(plan_id), source=source, targets=clients,
                                         target_settings={t.name: t for t in policy.mirror.targets},
                                         source_repositories=dict(zip(plan["digest"], plan["source_repository"])),
                                         deep=deep)
        finally:
            for client in clients.values():
                client.close()
    summary = {"execution": result.as_dict(), "verification": verification.as_dict()}
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"mirror plan {plan_id[:12]}: {result.outcomes()}")
        for name, reason in result.failed_targets.items():
            print(f"  target {name} stopped: {reason}")
        print(f"verified {verification.checked} copies: {'OK' if verification.ok else 'PROBLEMS'}")
        for problem in verification.problems[:20]:
            print(f"  {problem}")
    return 0 if result.complete and verification.ok else 4

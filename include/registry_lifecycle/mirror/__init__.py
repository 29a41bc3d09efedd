"""Cross-registry mirroring that decides what is worth copying, copies it verifiably, and proves it.

Harbor replication, Quay mirroring, ECR replication, `skopeo sync`, regsync and oc-mirror copy
what a filter names. This package decides per (image, target) whether a copy pays for itself
and copies only that, after a human approved the exact plan:

- `demand`: which images travel together (an index with its children, an image with its
  signatures and SBOMs), how often clusters of each region pulled them, and which images
  disaster-recovery rules require elsewhere;
- `target_state`: what each target holds now (HEAD of each candidate manifest, bounded
  concurrency, a target that rewrites digests refused);
- `cost`: egress saved versus storage and transfer, per target's prices;
- `plan`: one explained line per (image, target), totals and the monthly cost delta per
  target, a content-hash plan id; the `mirror_plan` dataset;
- `exports`: the same plan as `skopeo sync` YAML, an oc-mirror ImageSetConfiguration and
  ImageDigestMirrorSets for the clusters;
- `copy`: one image between two registries over the distribution API (blob HEAD,
  cross-repository mount, streamed upload in resumable chunks, manifest PUT, children and
  referrers), verified by digest;
- `audit`, `execute`, `verify`: the approved plan run idempotently with an append-only
  record of each action, then every copy checked on its target.

No module here imports Airflow: `registry_lifecycle.airflow.mirror_tasks` wraps them.
"""

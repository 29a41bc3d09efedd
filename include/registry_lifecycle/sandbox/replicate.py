"""Scale L by replication: a few simulated teams, copied into many teams of their own.

Simulating 4,400 applications day by day takes over an hour in pure Python, and holding every
version of every object of a 300-day history for all of them takes more memory than the
benchmark machine has. So L simulates `Scale.template_teams` teams in full (`scenario.py`) and
derives every other team from one of them, as of `until`:

- names: `teamNNN` becomes the copy's team everywhere (namespaces, repositories, labels,
  git URLs, object names); UIDs are re-derived so that no two objects share one;
- content: every app-specific layer becomes a new blob of the same size, every config,
  signature payload and SBOM is rewritten with the copy's names and digests, and every
  manifest is re-serialised over those, so each copy's digests are real content hashes that
  the registry serves and verifies, exactly like the template's. All replacements keep the
  length of what they replace (team names, digests, UUIDs), so descriptor sizes stay true;
- what is copied is what exists at `until`: live images, tag revisions up to `until`, the live
  version of each workload, the ground truth of the kept images (past and future pulls and
  references, trap categories), and the pull records from `archive_from` on. Base images, the
  node agent and every other object outside the teams are shared, history and all.

The template teams themselves go through the same cut, so every team of an L world looks
alike. What L gives up is the past: its clock starts at `until` (the APIs would otherwise
show copies of objects that never existed then) and its pull archive and scan reports start
at `archive_from`. Daily history for training and backtests comes from the small scales.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

from . import oci
from .model import PullRecord, Series, TimelineObject, TimelineSource
from .world import GroundTruth, SimImage, SimStream, TagEvent, TagHistory, World

TEAM = re.compile(r"team(\d{3})")
# What a copy renames, in one pass: team names, digests (`sha256:<hex>`, and cosign's `sha256-<hex>`
# tags), and UIDs.
RENAMED = re.compile(r"team(?P<team>\d{3})|sha256(?P<sep>[:-])(?P<hex>[0-9a-f]{64})"
                     r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DIGEST_TOKEN = re.compile(r"sha256[:-][0-9a-f]{64}")
# Days of pull records (and archive) up to `until`: today's extraction and yesterday's re-run.
ARCHIVE_DAYS = 2


def team_of(namespace: str) -> int | None:
    """The team index of a team namespace (`team007-prod` -> 7), None outside the teams."""
    match = TEAM.match(namespace)
    return int(match[1]) if match and namespace.startswith(match[0] + "-") else None


class _Text:
    """A text of the template with what a copy renames in it, found once for all copies."""

    __slots__ = ("text", "tokens")

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tuple({match[0] for match in RENAMED.finditer(text)})


class _Copy:
    """One copy of one template team: the renaming and the digest map that derive it."""

    def __init__(self, template_team: int, team: int, copy: int, world: World) -> None:
        self.template_team, self.team, self.copy = template_team, team, copy
        self.identity = copy == 0
        self.world = world
        self.digests: dict[str, str] = {}          # template digest -> this copy's digest
        self._renamed: dict[str, str] = {}         # token -> its replacement in this copy
        self._texts: dict[str, str] = {}

    def rename(self, text: _Text) -> str:
        """The text with this copy's team name, digests and UIDs, each the length of what it replaces."""
        value = text.text
        if self.identity:
            return value
        for token in text.tokens:
            value = value.replace(token, self._token(token))
        return value

    def _token(self, token: str) -> str:
        renamed = self._renamed.get(token)
        if renamed is None:
            if token.startswith("team"):
                renamed = f"team{self.team:03d}" if int(token[4:]) == self.template_team else token
            elif token.startswith("sha256"):
                mapped = self.digests.get("sha256:" + token[7:])
                renamed = token if mapped is None else token[:7] + mapped[7:]
            else:
                renamed = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{token}/copy{self.copy}"))
            # Digests are mapped as images are copied, so an unmapped one may be mapped later.
            if renamed != token or not token.startswith("sha256"):
                self._renamed[token] = renamed
        return renamed

    def text(self, value: str) -> str:
        """A short text (a name, a tag, a label) renamed; names repeat, so each is renamed once."""
        if self.identity:
            return value
        renamed = self._texts.get(value)
        if renamed is None:
            renamed = RENAMED.sub(lambda match: self._token(match[0]), value)
            if not DIGEST_TOKEN.search(value):     # a digest may be mapped later: do not remember it unmapped
                self._texts[value] = renamed
        return renamed

    def blob(self, digest: str, template: "_Template") -> str:
        """This copy's version of a blob: shared ones (base layers) stay, the team's own are re-derived."""
        if self.identity or digest in template.shared:
            return digest
        mapped = self.digests.get(digest)
        if mapped is None:
            blobs = self.world.blobs
            if blobs.is_synthetic(digest):
                mapped = blobs.derive(digest, f"copy{self.copy}")
            else:
                mapped = blobs.add_bytes(self.rename(template.literal(digest)).encode())
            self.digests[digest] = mapped
        return mapped

    def image(self, image: SimImage, manifest: _Text, template: "_Template") -> SimImage:
        if self.identity:
            return image
        layers = [(self.blob(digest, template), size, media_type) for digest, size, media_type in image.layers]
        config = self.blob(image.config_digest, template) if image.config_digest else None
        body = self.rename(manifest).encode()
        digest = oci.sha256_digest(body)
        self.digests[image.digest] = digest
        return SimImage(digest=digest, repository=self.text(image.repository), media_type=image.media_type,
                        manifest=body, created=image.created, config_digest=config, layers=layers,
                        architecture=image.architecture, os=image.os,
                        labels={key: self.text(value) for key, value in image.labels.items()},
                        children=[self.digests.get(child, child) for child in image.children],
                        subject=self.digests.get(image.subject, image.subject) if image.subject else None,
                        kind=image.kind, config_size=image.config_size, removed=image.removed)


class _Template:
    """What every copy of one template team is derived from, cut to `until` and scanned once."""

    def __init__(self, world: World, until) -> None:
        self.world = world
        self.images: dict[int, list[tuple[SimImage, _Text]]] = {}
        self.streams: dict[int, list[tuple[SimStream, list[tuple[str, list[TagEvent], TagHistory]]]]] = {}
        self.objects: dict[int, list[tuple]] = {}
        self._literals: dict[str, _Text] = {}
        # Blobs of images outside the teams (base images, the node agent) are shared by every copy.
        self.shared = {digest for image in world.images.values() if team_of(image.repository) is None
                       for digest in [d for d, _, _ in image.layers] + [image.config_digest] if digest}
        alive = [image for image in world.images.values()
                 if team_of(image.repository) is not None and image.exists_at(until)]
        # Subjects before their signatures and SBOMs, so that a referrer's manifest names the copy's subject.
        alive.sort(key=lambda image: (image.subject is not None, image.created, image.digest))
        kept = {image.digest for image in alive}
        for image in alive:
            self.images.setdefault(team_of(image.repository), []).append((image, _Text(image.manifest.decode())))
        for stream in world.streams.values():
            team = team_of(stream.namespace)
            if team is None:
                continue
            tags = []
            for tag, history in stream.tags.items():
                items = [item for item in history.items if item.created <= until and item.digest in kept]
                if items:
                    tags.append((tag, items, history))
            self.streams.setdefault(team, []).append((stream, tags))
        for rtype, source in world.kube.items():
            if rtype.plural in ("images", "imagestreams"):
                continue
            for version in source.versions():
                team = team_of(version.namespace or version.name)
                if team is not None and version.exists_at(until):
                    self.objects.setdefault(team, []).append(
                        (rtype, version, _Text(json.dumps(version.body, separators=(",", ":")))))

    def literal(self, digest: str) -> _Text:
        text = self._literals.get(digest)
        if text is None:
            text = self._literals[digest] = _Text(self.world.blobs.literal(digest).decode())
        return text


def replicate(template_world: World, *, template_teams: int, copies: int) -> World:
    """An L world: each of the template's teams copied `copies` times (copy 0 is the template
    team itself), every team cut to what exists at `until`."""
    until = template_world.until
    world = World(seed=template_world.seed, scale=template_world.scale, start=template_world.start, until=until,
                  future_until=template_world.future_until, blobs=template_world.blobs)
    world.served_from = until
    world.archive_from = (until - timedelta(days=ARCHIVE_DAYS - 1)).date()
    world.pvc_resized_at = template_world.pvc_resized_at
    template = _Template(template_world, until)
    for digest, image in template_world.images.items():
        if team_of(image.repository) is None:
            world.images[digest] = image
    for key, stream in template_world.streams.items():
        if team_of(stream.namespace) is None:
            world.streams[key] = stream
    for name, labels in template_world.namespaces.items():
        if team_of(name) is None:
            world.namespaces[name] = labels
    kube = {rtype: TimelineSource() for rtype in template_world.kube
            if rtype.plural not in ("images", "imagestreams")}
    for rtype, source in template_world.kube.items():
        if rtype in kube:
            for version in source.versions():
                if team_of(version.namespace or version.name) is None:
                    kube[rtype].put(version)
    first_day = world.archive_from.isoformat()
    recent: dict[int | None, list[PullRecord]] = {}
    for record in template_world.pulls:
        if record.day >= first_day:
            recent.setdefault(team_of(record.repository.split("/")[0]), []).append(record)
    world.pulls = list(recent.get(None, []))
    truth = template_world.truth
    for category, digests in truth.categories.items():
        world.truth.categories[category] = {d for d in digests if d in world.images}
    categories: dict[str, list[str]] = {}           # digest -> the trap categories it is in
    for category, members in truth.categories.items():
        for digest in members:
            categories.setdefault(digest, []).append(category)
    for copy in range(copies):
        for template_team in range(template_teams):
            replica = _Copy(template_team, copy * template_teams + template_team, copy, world)
            for image, manifest in template.images.get(template_team, []):
                copied = replica.image(image, manifest, template)
                world.images[copied.digest] = copied
                _copy_truth(truth, world.truth, image.digest, copied.digest, categories)
            for stream, tags in template.streams.get(template_team, []):
                _copy_stream(world, replica, stream, tags)
            for rtype, version, body in template.objects.get(template_team, []):
                kube[rtype].put(TimelineObject(
                    replica.text(version.namespace), replica.text(version.name),
                    version.body if replica.identity else json.loads(replica.rename(body)),
                    version.created, version.removed))
            world.pulls.extend(_copy_pull(record, replica) for record in recent.get(template_team, [])
                               if replica.digests.get(record.digest, record.digest) in world.images)
            for name, labels in template_world.namespaces.items():
                if team_of(name) == template_team:
                    world.namespaces[replica.text(name)] = {k: replica.text(v) for k, v in labels.items()}
    world.pulls.sort(key=lambda r: (r.day, r.repository, r.digest, r.cluster))
    world.truth.finish()
    # Storage grows with the number of copies; the template's sawtooth keeps its shape.
    world.storage = [Series(s.metric, dict(s.labels), list(s.timestamps), [v * copies for v in s.values])
                     for s in template_world.storage]
    from . import resources
    from .openshift_objects import ImageSource, ImageStreamSource

    world.kube = dict(kube)
    world.kube[resources.IMAGES] = ImageSource(world)                  # type: ignore[assignment]
    world.kube[resources.IMAGE_STREAMS] = ImageStreamSource(world)     # type: ignore[assignment]
    return world


def _copy_stream(world: World, replica: _Copy, stream: SimStream,
                 tags: list[tuple[str, list[TagEvent], TagHistory]]) -> None:
    copied = SimStream(replica.text(stream.namespace), stream.name, stream.created, generation=stream.generation)
    digests = replica.digests
    for tag, items, history in tags:
        copied.tags[replica.text(tag)] = TagHistory(
            [TagEvent(item.created, digests.get(item.digest, item.digest), item.generation) for item in items]
            if not replica.identity else list(items), history.removed,
            json.loads(replica.text(json.dumps(history.spec_from))) if history.spec_from else None)
    copied.extra_links = {digests.get(d, d): when for d, when in stream.extra_links.items()
                          if digests.get(d, d) in world.images}
    world.streams[copied.repository] = copied


def _copy_truth(template: GroundTruth, truth: GroundTruth, digest: str, copied: str,
                categories: dict[str, list[str]]) -> None:
    """Pulls, workload references and trap categories of a kept image, under its copy's digest."""
    if digest in template.pull_days:
        truth.pull_days[copied] = list(template.pull_days[digest])
    if digest in template.reference_starts:
        truth.reference_starts[copied] = list(template.reference_starts[digest])
    for category in categories.get(digest, ()):
        truth.categories[category].add(copied)


def _copy_pull(record: PullRecord, replica: _Copy) -> PullRecord:
    return PullRecord(record.day, replica.text(record.repository), replica.digests.get(record.digest, record.digest),
                      replica.text(record.tag) if record.tag else None, record.cluster, record.pulls,
                      record.media_type, record.size, list(record.user_agents))

"""Image and ImageStream objects rendered from the world, field for field as
`image.openshift.io/v1` serves them (openshift/api image/v1/types.go).

ImageStreams change with every push and `oc tag`, so they are rendered for the instant asked,
unlike workloads, whose bodies are fixed for their lifetime. A status write is applied back
onto the world's tag histories, the way `oc adm prune images` removes tag revisions.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime

from . import oci
from .model import TimelineObject
from .world import INTERNAL_REGISTRY, PUBLIC_REGISTRY, SimImage, World, rfc3339


def object_uid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def image_body(image: SimImage) -> dict:
    metadata_created = rfc3339(image.created)
    body: dict = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "Image",
        "metadata": {
            "name": image.digest,
            "uid": object_uid("image", image.digest),
            "resourceVersion": str(int(image.created.timestamp())),
            "creationTimestamp": metadata_created,
            "annotations": {"image.openshift.io/dockerLayersOrder": "ascending",
                            "openshift.io/image.managed": "true"},
        },
        "dockerImageReference": f"{INTERNAL_REGISTRY}/{image.repository}@{image.digest}",
        "dockerImageMetadataVersion": "1.0",
        "dockerImageManifestMediaType": image.media_type,
    }
    if image.media_type in oci.INDEX_TYPES:
        manifests = json.loads(image.manifest)["manifests"]
        body["dockerImageManifests"] = [
            {"digest": m["digest"], "mediaType": m["mediaType"], "manifestSize": m["size"],
             "architecture": m.get("platform", {}).get("architecture", ""),
             "os": m.get("platform", {}).get("os", ""), "variant": m.get("platform", {}).get("variant", "")}
            for m in manifests
        ]
        body["dockerImageMetadata"] = {"kind": "DockerImage", "apiVersion": "image.openshift.io/1.0",
                                       "Created": metadata_created}
        body["dockerImageLayers"] = []
        return body
    body["dockerImageLayers"] = [{"name": digest, "size": size, "mediaType": media_type}
                                 for digest, size, media_type in image.layers]
    body["dockerImageMetadata"] = {
        "kind": "DockerImage",
        "apiVersion": "image.openshift.io/1.0",
        "Id": image.config_digest or "",
        "Created": metadata_created,
        "Architecture": image.architecture,
        "Size": image.size,
        "Config": {"Labels": image.labels},
        "ContainerConfig": {},
    }
    return body


class ImageSource:
    """Cluster-scoped Image objects; deleting one removes it from the world at that instant."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._order = sorted(world.images)

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        images = self.world.images
        return [("", digest) for digest in self._order if images[digest].exists_at(at)]

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        image = self.world.images.get(name)
        return image_body(image) if image is not None and image.exists_at(at) else None

    def remove(self, namespace: str, name: str, at: datetime) -> bool:
        image = self.world.images.get(name)
        if image is None or not image.exists_at(at):
            return False
        image.removed = at
        return True


class ImageStreamSource:
    """ImageStreams with their tag history as it stood at the instant asked; writable, so that
    a status update (what `oc adm prune images` sends) can remove tag revisions."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._order = sorted((s.namespace, s.name) for s in world.streams.values())

    def keys(self, at: datetime, namespace: str | None = None) -> list[tuple[str, str]]:
        streams = self.world.streams
        return [key for key in self._order
                if (namespace is None or key[0] == namespace) and streams[f"{key[0]}/{key[1]}"].created <= at]

    def render(self, namespace: str, name: str, at: datetime) -> dict | None:
        stream = self.world.streams.get(f"{namespace}/{name}")
        if stream is None or stream.created > at:
            return None
        repo = f"{INTERNAL_REGISTRY}/{stream.repository}"
        status_tags, spec_tags, generation = [], [], 1
        for tag in sorted(stream.tags):
            history = stream.tags[tag]
            items = [item for item in history.at(at) if self.world.images[item.digest].exists_at(at)]
            if not items:
                continue
            generation = max(generation, items[0].generation)
            status_tags.append({"tag": tag, "items": [
                {"created": rfc3339(item.created), "dockerImageReference": f"{repo}@{item.digest}",
                 "image": item.digest, "generation": item.generation} for item in items]})
            if history.spec_from is not None:
                spec_tags.append({"name": tag, "annotations": None, "from": history.spec_from,
                                  "generation": items[0].generation, "importPolicy": {"importMode": "Legacy"},
                                  "referencePolicy": {"type": "Source"}})
        return {
            "apiVersion": "image.openshift.io/v1",
            "kind": "ImageStream",
            "metadata": {"name": name, "namespace": namespace,
                         "uid": object_uid("imagestream", namespace, name),
                         "resourceVersion": str(generation), "generation": generation,
                         "creationTimestamp": rfc3339(stream.created)},
            "spec": {"lookupPolicy": {"local": False}, "tags": spec_tags},
            "status": {"dockerImageRepository": repo,
                       "publicDockerImageRepository": f"{PUBLIC_REGISTRY}/{stream.repository}",
                       "tags": status_tags},
        }

    def put(self, obj: TimelineObject) -> None:
        """Apply a written ImageStream's `status.tags` to the stream's tag histories.

        Every revision the stream showed at `obj.created` and the written status no longer
        lists is removed, as the image API does when a pruner writes a stream's status
        without some tag events. Revisions are matched by (image, generation), which is
        unique per stream. Revisions the written status adds are ignored: new tag events
        come from pushes and `oc tag` (spec), never from a status write. Whatever else the
        object carries (spec, metadata) is rendered from the world and not stored.
        """
        stream = self.world.streams.get(f"{obj.namespace}/{obj.name}")
        if stream is None:
            return
        at = obj.created
        listed: dict[str, set[tuple[str, int]]] = {}
        for named in (obj.body.get("status") or {}).get("tags") or []:
            listed[named.get("tag", "")] = {(item.get("image"), item.get("generation"))
                                            for item in named.get("items") or []}
        for tag, history in stream.tags.items():
            shown = {id(item) for item in history.at(at) if self.world.images[item.digest].exists_at(at)}
            kept = listed.get(tag, set())
            history.items = [item for item in history.items
                             if id(item) not in shown or (item.digest, item.generation) in kept]

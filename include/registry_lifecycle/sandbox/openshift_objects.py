"""Image and ImageStream objects rendered from the world, field for field as
`image.openshift.io/v1` serves them (openshift/api image/v1/types.go).

ImageStreams change with every push and `oc tag`, so they are rendered for the instant asked,
unlike workloads, whose bodies are fixed for their lifetime.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime

from . import oci
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
    """ImageStreams with their tag history as it stood at the instant asked."""

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

"""The Kubernetes and OpenShift resource types the sandbox serves, as discovery lists them."""
from __future__ import annotations

from .model import ResourceType

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete")

NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", False, READ, ("ns",), "namespace")
PODS = ResourceType("", "v1", "Pod", "pods", True, READ + ("delete",), ("po",), "pod")
REPLICATION_CONTROLLERS = ResourceType("", "v1", "ReplicationController", "replicationcontrollers", True,
                                       READ, ("rc",), "replicationcontroller")
CONFIG_MAPS = ResourceType("", "v1", "ConfigMap", "configmaps", True, READ + WRITE, ("cm",), "configmap")
EVENTS = ResourceType("", "v1", "Event", "events", True, READ + ("create",), ("ev",), "event")
DEPLOYMENTS = ResourceType("apps", "v1", "Deployment", "deployments", True, READ, ("deploy",), "deployment")
REPLICA_SETS = ResourceType("apps", "v1", "ReplicaSet", "replicasets", True, READ, ("rs",), "replicaset")
STATEFUL_SETS = ResourceType("apps", "v1", "StatefulSet", "statefulsets", True, READ, ("sts",), "statefulset")
DAEMON_SETS = ResourceType("apps", "v1", "DaemonSet", "daemonsets", True, READ, ("ds",), "daemonset")
DEPLOYMENT_CONFIGS = ResourceType("apps.openshift.io", "v1", "DeploymentConfig", "deploymentconfigs", True,
                                  READ, ("dc",), "deploymentconfig")
JOBS = ResourceType("batch", "v1", "Job", "jobs", True, READ, (), "job")
CRON_JOBS = ResourceType("batch", "v1", "CronJob", "cronjobs", True, READ, ("cj",), "cronjob")
BUILDS = ResourceType("build.openshift.io", "v1", "Build", "builds", True, READ, (), "build")
BUILD_CONFIGS = ResourceType("build.openshift.io", "v1", "BuildConfig", "buildconfigs", True, READ, ("bc",),
                             "buildconfig")
IMAGES = ResourceType("image.openshift.io", "v1", "Image", "images", False, READ + ("delete",), (), "image")
IMAGE_STREAMS = ResourceType("image.openshift.io", "v1", "ImageStream", "imagestreams", True,
                             READ + ("update", "patch"), ("is",), "imagestream")

ALL = (NAMESPACES, PODS, REPLICATION_CONTROLLERS, CONFIG_MAPS, EVENTS, DEPLOYMENTS, REPLICA_SETS,
       STATEFUL_SETS, DAEMON_SETS, DEPLOYMENT_CONFIGS, JOBS, CRON_JOBS, BUILDS, BUILD_CONFIGS,
       IMAGES, IMAGE_STREAMS)

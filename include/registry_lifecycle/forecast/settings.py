"""The capacity-forecast part of the policy: how far ahead to look, and when to wake someone up.

The defaults encode the issue's policy: alert when the registry is at least 20% likely to be
full within 30 days, which leaves a platform team weeks (not the four days of kube-prometheus'
KubePersistentVolumeFillingUp) to resize the volume, prune, or move to object storage.
"""
from ..config import ForecastSettings

__all__ = ["ForecastSettings"]

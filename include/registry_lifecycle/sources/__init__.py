"""One client per outside system: openshift, registry, pulls, prometheus, scans."""

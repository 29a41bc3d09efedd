"""Registry Lifecycle: the image lifecycle of the OpenShift internal registry."""
__version__ = "0.1.0"

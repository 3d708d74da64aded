"""kube-image-keeper core: the library the webhook, replicator and monitor share."""

__version__ = "0.1.0"

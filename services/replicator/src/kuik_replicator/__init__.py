"""kuik replicator service."""

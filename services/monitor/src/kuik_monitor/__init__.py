"""kuik monitor service."""

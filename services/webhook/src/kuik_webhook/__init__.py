"""kuik webhook service."""

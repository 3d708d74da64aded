"""Shared fixtures come from the `kuikcore.testing.plugin` pytest plugin (see pyproject)."""

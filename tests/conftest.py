"""Shared fixtures come from the `kuik_testing.plugin` pytest plugin (see pyproject)."""

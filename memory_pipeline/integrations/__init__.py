"""Adapters for agent frameworks (docs/integrations.md); each needs its pip extra."""

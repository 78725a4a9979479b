"""Backbones (registry, families, factory) and the temporal heads."""

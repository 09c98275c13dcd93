"""Example topology provider for volcano-topology."""

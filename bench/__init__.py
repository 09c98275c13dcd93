"""Benchmarks: ``python -m bench.scale`` (issue 15's scale suite) and the ibnetdiscover parse timing."""

"""Synthetic test data: realistic climbing-wall photos."""

"""Synthetic test data: realistic climbing-wall photos and small deterministic test images."""

"""Latency benchmarks of the service against the old PyTorch service."""

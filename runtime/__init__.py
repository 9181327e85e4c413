"""Serving runtime: ONNX Runtime SAM inference with an embedding cache (no torch needed)."""

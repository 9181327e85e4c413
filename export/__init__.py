"""Export of SAM checkpoints to verified ONNX models (needs torch and segment_anything)."""

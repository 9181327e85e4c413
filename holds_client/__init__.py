"""Client of the SAM hold-extraction endpoint: library (``SageMakerSAMClient``) and command line.

``sagemaker_client.py`` at the repository root re-exports this package (the old guide's name).
"""

from holds_client.checks import verify
from holds_client.client import EndpointError, HoldsResult, SageMakerSAMClient, parse_response, request_file
from holds_client.embedding import Embedding
from holds_client.prompts import Outputs, Prompt, build_zip, parse_box, parse_labels, parse_points, raw_attributes

__all__ = ["Embedding", "EndpointError", "HoldsResult", "Outputs", "Prompt", "SageMakerSAMClient", "build_zip", "parse_box",
           "parse_labels", "parse_points", "parse_response", "raw_attributes", "request_file", "verify"]

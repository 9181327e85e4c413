"""Client for the SAM hold-extraction endpoint: real-time (JSON, zip, raw), sessions, async, health.

    python sagemaker_client.py --endpoint-name sam-climbing-endpoint --test-image wall.jpg --points "x,y;x,y"
    python sagemaker_client.py --endpoint-name sam-climbing-endpoint --endpoint-url http://127.0.0.1:8080 --health

Every option of the request contract has a flag (``--help``). Against a local server
(``--endpoint-url``) no AWS set-up is needed. The code lives in the ``holds_client`` package;
this file keeps the old guide's name for the library and the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from holds_client import (
    Embedding,
    EndpointError,
    HoldsResult,
    Outputs,
    Prompt,
    SageMakerSAMClient,
    build_zip,
    parse_box,
    parse_labels,
    parse_points,
    parse_response,
    raw_attributes,
    request_file,
    verify,
)
from holds_client.cli import main

__all__ = ["Embedding", "EndpointError", "HoldsResult", "Outputs", "Prompt", "SageMakerSAMClient", "build_zip", "main", "parse_box",
           "parse_labels", "parse_points", "parse_response", "raw_attributes", "request_file", "verify"]

if __name__ == "__main__":
    sys.exit(main())

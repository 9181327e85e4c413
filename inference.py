"""SageMaker entry point: the handler functions and ``python inference.py serve``.

    python inference.py serve [--model-dir DIR] [--host H] [--port P]

Defaults follow SageMaker: model dir ``SM_MODEL_DIR`` or ``/opt/ml/model``, host 0.0.0.0,
port ``SAGEMAKER_BIND_TO_PORT`` or 8080. The same file, as ``code/inference.py`` in
``model.tar.gz``, serves in AWS's prebuilt containers through ``model_fn``, ``input_fn``,
``predict_fn`` and ``output_fn``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving.handlers import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "main", "model_fn", "output_fn", "predict_fn"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SAM climbing-hold extraction endpoint")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="start the HTTP server (SageMaker runs 'serve')")
    serve_parser.add_argument("--model-dir", type=Path, help="exported model directory (default SM_MODEL_DIR or /opt/ml/model)")
    serve_parser.add_argument("--host", help="bind address (default 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, help="port (default SAGEMAKER_BIND_TO_PORT or 8080)")
    args = parser.parse_args(argv)

    from serving.config import ServerSettings
    from serving.server import serve

    try:
        settings = ServerSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("model_dir", args.model_dir), ("host", args.host), ("port", args.port)) if v is not None}
    return serve(dataclasses.replace(settings, **overrides))


if __name__ == "__main__":
    sys.exit(main())

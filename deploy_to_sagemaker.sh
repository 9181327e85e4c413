#!/usr/bin/env bash
# Deploy the SAM hold-extraction endpoint to SageMaker: the tool is the Python package deploy/
# (boto3); `./deploy_to_sagemaker.sh --help` lists its commands and settings.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$here/.venv/bin/python"
[[ -x "$python" ]] || python=python3
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m deploy "$@"

"""``python -m deploy``: the deploy tool (deploy_to_sagemaker.sh runs it)."""

from deploy.cli import main

raise SystemExit(main())

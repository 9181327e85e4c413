"""Deployment tooling over boto3: settings checked first, every failure leaves the endpoint as it was.

``deploy_to_sagemaker.sh`` runs ``python -m deploy``; see ``deploy.cli`` for the commands.
"""

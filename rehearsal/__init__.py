"""Local stand-ins for AWS used to rehearse deployments (never part of the container)."""

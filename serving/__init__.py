"""The SageMaker-facing HTTP service: request contracts, sessions, the ASGI app."""

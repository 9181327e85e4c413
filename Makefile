# Two entry points do all set-up on a fresh machine:
#   make demo   export vit_b, start the local endpoint, extract holds from a sample wall photo
#               (CHECKPOINT=path/sam_vit_b_01ec64.pth: re-exports when models/vit_b has other weights)
#   make test   the whole test suite (fast + slow), as CI runs it
#   make container-test      build the CPU serving image with buildah and run it as SageMaker does (root,
#                            apt-get install buildah debootstrap); make container-test-gpu: the GPU image
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test test-fast lint demo clean container-test container-test-gpu

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[serving,export,deploy,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/shellcheck -x deploy_to_sagemaker.sh .ci/run
	$(PY) -m mypy

test: $(STAMP) lint
	$(PY) -m pytest

demo: $(STAMP)
	$(PY) scripts/demo.py $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)")

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Dockerfile.sagemaker built from a Debian stand-in for python:3.11-slim and run with buildah
# (scripts/container/container_test.py); reports go to out/container-test/.
container-test: $(STAMP)
	$(PY) scripts/container/container_test.py --variant cpu

# The GPU image (about 3.5 GB of NVIDIA wheels); CUDA_MAJOR=13 for the CUDA 13 stack,
# TENSORRT=true|false|auto (auto: TensorRT when pypi.nvidia.com can be reached).
container-test-gpu: $(STAMP)
	$(PY) scripts/container/container_test.py --variant gpu --cuda-major $(or $(CUDA_MAJOR),12) --tensorrt $(or $(TENSORRT),auto)

clean:
	rm -rf $(VENV) models model_artifacts out .pytest_cache .mypy_cache .ruff_cache

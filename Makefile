# Two entry points do all set-up on a fresh machine:
#   make demo   export vit_b, start the local endpoint, extract holds from a sample wall photo
#               (CHECKPOINT=path/sam_vit_b_01ec64.pth: re-exports when models/vit_b has other weights)
#   make test   the whole test suite (fast + slow), as CI runs it
#   make unit   the tests that need no exported model, server process or command (well under a minute)
#   make web-runtime  onnxruntime-web from npm (web/package-lock.json) into serving/static/ort, for
#                     /playground's browser mode (needs npm; the page keeps server mode without it)
#   make container-test      build the CPU serving image with buildah and run it as SageMaker does (root,
#                            apt-get install buildah debootstrap); make container-test-gpu: the GPU image
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv test test-fast unit lint demo clean web-runtime container-test container-test-gpu go-unit go-integration go-test go-client

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

test: $(STAMP) lint go-test
	$(PY) -m pytest --ignore=tests/integration/test_go_client.py  # make go-test ran it

# The Go client (clients/go, issue 27), built offline in GOPATH mode against Debian's
# golang-github-aws-aws-sdk-go-v2-dev sources (no module proxy needed); build cache in /tmp.
# go-test: vet, the unit tests, then tests/integration/test_go_client.py, which starts our server
# and the rehearsal's data plane and runs go-integration (build tag integration) against them.
GO_ENV := GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=/tmp/holds-go-cache GOFLAGS=
GO_PACKAGES := ./clients/go/holds ./clients/go/cmd/holds-extract ./clients/go/examples/infra

go-unit:
	$(GO_ENV) go vet -tags integration $(GO_PACKAGES)
	$(GO_ENV) go test ./clients/go/holds ./clients/go/examples/infra

go-integration:
	$(GO_ENV) go test -count=1 -tags integration -run Integration -v ./clients/go/holds

go-test: $(STAMP) go-unit
	$(PY) -m pytest -q tests/integration/test_go_client.py

go-client:
	$(GO_ENV) go build -o bin/holds-extract ./clients/go/cmd/holds-extract

demo: $(STAMP)
	$(PY) scripts/demo.py $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)")

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# Selected by cost, not folder: tests/conftest.py marks "costly" every test that exports a model,
# starts a server or runs a command.
unit: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not costly and not gpu" --durations=5

# npm ci of web/package-lock.json in out/web-runtime-build, then only the files the page loads are
# copied into serving/static/ort (gitignored; scripts/build_web_runtime.py).
web-runtime: $(STAMP)
	$(PY) -m scripts.build_web_runtime

# Dockerfile.sagemaker built from a Debian stand-in for python:3.11-slim and run with buildah
# (scripts/container/container_test.py); reports go to out/container-test/.
container-test: $(STAMP) web-runtime
	$(PY) scripts/container/container_test.py --variant cpu

# The GPU image (about 3.5 GB of NVIDIA wheels); CUDA_MAJOR=13 for the CUDA 13 stack,
# TENSORRT=true|false|auto (auto: TensorRT when pypi.nvidia.com can be reached).
container-test-gpu: $(STAMP) web-runtime
	$(PY) scripts/container/container_test.py --variant gpu --cuda-major $(or $(CUDA_MAJOR),12) --tensorrt $(or $(TENSORRT),auto)

clean:
	rm -rf $(VENV) models model_artifacts out serving/static/ort .pytest_cache .mypy_cache .ruff_cache

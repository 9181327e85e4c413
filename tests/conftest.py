"""Shared fixtures: a tiny model exported once per test session through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPORT_CLI = REPO / "export" / "export_sam.py"


#: Fixtures that export a model or start a server process (seconds to minutes each): a test that uses
#: one, directly or through another fixture, is marked ``costly`` and left out of ``make unit``.
COSTLY_FIXTURES = frozenset({
    "tiny_model_dir", "tiny_model_dir_b", "tiny_sam", "vit_b_checkpoint", "vit_b_model_dir", "tiny_server",
    "vit_t_model_dir", "cone_model_dir", "tiny_int8_model_dir",
})


#: Tests that cost seconds without those fixtures (they run the export, pip, shellcheck or a server
#: process themselves, or a 12 MP encode), by node id prefix; measured on the 2-core machine.
COSTLY_TESTS = (
    "tests/export/test_export_cli.py", "tests/export/test_export_errors.py", "tests/integration/test_packaging.py",
    "tests/integration/test_vit_t.py", "tests/integration/test_deploy_rehearsal.py", "tests/integration/test_client_cli.py",
    "tests/integration/test_server_lifecycle.py", "tests/unit/test_hostile_inputs.py::test_a_12_mp_noise_cut_out",
    "tests/fuzz/test_parsers.py::test_json_contract_answers_or_refuses",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by cost (``COSTLY_FIXTURES``, ``COSTLY_TESTS``), whatever folder they are in."""
    for item in items:
        if COSTLY_FIXTURES.intersection(getattr(item, "fixturenames", ())) or item.nodeid.startswith(COSTLY_TESTS):
            item.add_marker(pytest.mark.costly)


def run_export(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``export/export_sam.py`` as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, str(EXPORT_CLI), *args],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
        env={**os.environ, **(env or {})},
    )


def exported(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str) -> Path:
    """``export_sam.py ARGS --output <a new temporary folder>``, which must succeed."""
    out = tmp_path_factory.mktemp(name)
    result = run_export(*args, "--output", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SAM (seeded random weights) exported with fp16 variants and verified parity."""
    return exported(tmp_path_factory, "tiny_model", "--model-type", "tiny", "--random-weights", "--seed", "3", "--fp16")


@pytest.fixture(scope="session")
def tiny_int8_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model (seed 3, the ``tiny_sam`` twin) exported with --int8: every CPU tier's graphs and parity."""
    return exported(tmp_path_factory, "tiny_int8", "--model-type", "tiny", "--random-weights", "--seed", "3", "--int8")


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny SAM (another seed, so other masks): the challenger of the A/B rehearsal."""
    return exported(tmp_path_factory, "tiny_model_b", "--model-type", "tiny", "--random-weights", "--seed", "4")


@pytest.fixture(scope="session")
def tiny_sam():  # type: ignore[no-untyped-def]
    """The PyTorch twin of ``tiny_model_dir`` (same seed), for reference computations."""
    from export.sam_models import build_random

    return build_random("tiny", 3)


@pytest.fixture(scope="session")
def vit_b_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vit_b checkpoint file with seeded random weights, written as a real .pth."""
    import torch

    from export.sam_models import build_random

    path = tmp_path_factory.mktemp("vit_b_ckpt") / "sam_vit_b_random.pth"
    torch.save(build_random("vit_b", 11).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def vit_b_model_dir(tmp_path_factory: pytest.TempPathFactory, vit_b_checkpoint: Path) -> Path:
    """vit_b exported through ``--checkpoint`` (the real loading path), parity enforced."""
    return exported(tmp_path_factory, "vit_b_model", "--model-type", "vit_b", "--checkpoint", str(vit_b_checkpoint))


@pytest.fixture(scope="session")
def tiny_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real server process on the tiny model for the whole session."""
    from tests.integration.server import start_server

    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("server") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_client(tiny_server):  # type: ignore[no-untyped-def]
    """The Python client of the session's tiny server (no AWS set-up: unsigned test credentials)."""
    from sagemaker_client import SageMakerSAMClient

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return SageMakerSAMClient("sam-climbing-endpoint", "us-east-1", tiny_server.url)


@pytest.fixture(scope="session")
def vit_t_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileSAM (vit_t) with seeded random weights, exported with parity against MobileSAM."""
    return exported(tmp_path_factory, "vit_t_model", "--model-type", "vit_t", "--random-weights", "--seed", "5")


@pytest.fixture(scope="session")
def cone_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny export with its decoder replaced by the cone (``tests.cone_model``): each click's
    mask is a disk of known radius around it."""
    from tests.cone_model import make_cone_model_dir

    return make_cone_model_dir(tiny_model_dir, tmp_path_factory.mktemp("cone_model"))


@pytest.fixture(scope="module")
def cone_server(cone_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real server on the cone model for one test module (its own cache and log, so a module's
    counts start at zero)."""
    from tests.integration.server import start_server

    server = start_server(cone_model_dir, tmp_path_factory.mktemp("cone_server") / "server.log")
    yield server
    server.stop()

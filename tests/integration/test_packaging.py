"""`pip install .` in a throwaway virtual environment: the three commands, the server's pages and the
client come from the installed package, not from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.integration.server import REPO, free_port

SCRIPTS = {"sam-holds-export": "--model-type", "sam-holds-serve": "serve", "sam-holds-client": "--endpoint-name"}


def _source_tree(target: Path) -> Path:
    """The project's files as git sees them (tracked, plus new files not ignored), without build litter."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel of this checkout installed (--no-deps); the dependencies come from the
    test environment's site-packages through a .pth file placed after the venv's own."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the project's files")
    root = tmp_path_factory.mktemp("packaging")
    source = _source_tree(root / "src")
    wheels = root / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                            "-w", str(wheels)], capture_output=True, text=True, check=False, timeout=300)
    assert built.returncode == 0, built.stderr
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheel = next(wheels.glob("sam_holds-*.whl"))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_project_declares_the_three_commands() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(project["project"]["scripts"]) == set(SCRIPTS)
    for extra in ("client", "serving", "deploy"):  # one pinned version of a package across the extras
        for requirement in project["project"]["optional-dependencies"][extra]:
            name, version = requirement.split("==")
            for other in project["project"]["optional-dependencies"].values():
                assert all(r.split("==")[1] == version for r in other if r.split("==")[0] == name), requirement


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_command_runs_from_the_installed_package(installed: Path, script: str, tmp_path: Path) -> None:
    result = subprocess.run([str(installed / "bin" / script), "--help"], capture_output=True, text=True, cwd=tmp_path,
                            env=_env(), check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:") and SCRIPTS[script] in result.stdout


def test_modules_and_page_files_come_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    script = ("import inference, sagemaker_client, serving.pages, holds_client, export.export_sam, synthetic.wall_photo\n"
              "for m in (inference, sagemaker_client, serving.pages, holds_client, export.export_sam):\n"
              "    print(m.__file__)\n"
              "print(serving.pages.STATIC_DIR)\n")
    result = subprocess.run([str(installed / "bin" / "python"), "-c", script], capture_output=True, text=True,
                            cwd=tmp_path, env=_env(), check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    paths = [Path(line) for line in result.stdout.split()]
    assert all(installed in path.parents for path in paths), paths
    static = paths[-1]
    assert {p.name for p in static.iterdir()} >= {"playground.html", "playground.js", "playground.css", "docs.css"}


def test_the_installed_server_serves_its_pages(installed: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(installed / "bin" / "sam-holds-serve"), "serve", "--model-dir", str(tiny_model_dir),
                               "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path, env=_env(),
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        for path in ("/playground", "/static/playground.js", "/docs"):
            assert httpx.get(url + path, timeout=10).status_code == 200, path
        health = subprocess.run([str(installed / "bin" / "sam-holds-client"), "--endpoint-name", "local",
                                 "--endpoint-url", url, "--health"], capture_output=True, text=True, cwd=tmp_path,
                                env=_env(), check=False, timeout=120)
        assert health.returncode == 0 and '"healthy": true' in health.stdout, health.stderr
    finally:
        server.terminate()
        server.wait(30)
        log.close()

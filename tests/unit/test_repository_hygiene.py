"""Drift the repository must not carry: run outputs under version control, references to files
that do not exist, colour escapes in JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess

import pytest

from serving.logs import JsonFormatter
from tests.integration.server import REPO

#: Written by runs (deploy test outputs, server logs with this machine's absolute paths).
RUN_OUTPUTS = (".deploy/test-wall.jpg", ".deploy/test-output/result.png", ".deploy/sam-climbing-endpoint.state",
               "benchmarks/vit_t/server.log", "benchmarks/server.log", "out/test-artifacts/playground.png")


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)


def test_run_outputs_are_neither_tracked_nor_trackable() -> None:
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout")
    tracked = _git("ls-files").stdout.splitlines()
    assert [p for p in tracked if p.startswith(".deploy/") or p.endswith("server.log")] == []
    ignored = _git("check-ignore", "--no-index", *RUN_OUTPUTS).stdout.split()
    assert sorted(ignored) == sorted(RUN_OUTPUTS)


def test_files_cited_by_docs_and_requirements_exist() -> None:
    sources = [*REPO.glob("requirements*.txt"), *REPO.glob("*.md"), REPO / "Makefile", REPO / "pyproject.toml",
               REPO / "Dockerfile.sagemaker", REPO / "deploy_to_sagemaker.sh"]
    cited = {(source.name, match) for source in sources
             for match in re.findall(r"\btests/[\w/]+\.py\b", source.read_text())}
    assert cited, "expected some citations to check"
    assert [(source, path) for source, path in sorted(cited) if not (REPO / path).is_file()] == []


def test_json_logs_carry_no_colour_escapes() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("uvicorn.error.test")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:  # exactly how uvicorn logs its start-up lines
        logger.info("Started server process [%d]", 42, extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"})
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue().strip()
    assert "\x1b" not in line and "\\u001b" not in line
    assert json.loads(line)["message"] == "Started server process [42]" and "color_message" not in json.loads(line)


def test_server_log_lines_have_no_colour_escapes(tiny_server) -> None:  # type: ignore[no-untyped-def]
    lines = [json.loads(line) for line in tiny_server.logs().splitlines() if line.startswith("{")]
    uvicorn = [line for line in lines if line.get("logger", "").startswith("uvicorn")]
    assert any(line["message"].startswith("Uvicorn running on") for line in uvicorn)
    for line in uvicorn:  # (request paths sent by the fuzz tests may hold escapes: JSON-escaped data, not colour)
        assert "color_message" not in line and "\x1b" not in json.dumps(line, ensure_ascii=False), line

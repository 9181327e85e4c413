"""The READMEs' commands, run exactly as written.

The blocks are read from README.md and README_SAGEMAKER.md here, so an edited example is the
one that runs. They run in a throwaway directory that looks like the repository (its files
linked in; ``models/vit_b`` and ``models/tiny`` are the tiny test model; ``wall.jpg`` is a
12 MP phone photo from synthetic/wall_photo.py; ``models/vit_t`` is the tiny model too), with no
AWS variables and an empty home,
inside a private network namespace (``unshare --net``), so the fixed ports of the examples
(8080, 5000, ...) are free whatever else runs on the machine. Only the waiting between the
blocks, the stand-ins a block needs that no README block sets up (an async endpoint) and
the final clean-up are the harness's own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from serving.service import RANDOM_WEIGHTS_WARNING
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO
from tests.reference import decode_mask, in_process_mask

#: Links to the checkout; what runs write (out/, .deploy/, model_artifacts/) stays in the sandbox.
NOT_LINKED = {".git", "models", "out", ".deploy", "model_artifacts", ".env", "wall.jpg", "request.json", "bin"}


def fenced_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced code block."""
    pattern = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [(m.group(1), m.group(2)) for m in pattern.finditer(path.read_text())]


def block_with(path: Path, language: str, *anchors: str) -> str:
    """The one block in ``language`` that contains every anchor (the test fails if none or several do)."""
    found = [text for lang, text in fenced_blocks(path) if lang == language and all(a in text for a in anchors)]
    assert len(found) == 1, f"{path.name}: {len(found)} {language} blocks contain {anchors}"
    return found[0]


def commands(block: str) -> list[str]:
    """The block's commands: backslash continuations joined, blank lines dropped."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def command_starting(block: str, prefix: str) -> str:
    found = [c for c in commands(block) if c.startswith(prefix)]
    assert len(found) == 1, f"expected one command starting {prefix!r}, found {found}"
    return found[0]


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("photo") / "wall.jpg"
    path.write_bytes(wall_photo().jpeg)  # 3024x4032 upright, EXIF orientation 6, as a phone stores it
    return path.read_bytes()


def sandbox(root: Path, tiny_model_dir: Path, photo: bytes) -> Path:
    """A directory that looks like the repository to the examples."""
    root.mkdir()
    for entry in REPO.iterdir():
        if entry.name not in NOT_LINKED:
            (root / entry.name).symlink_to(entry)
    (root / "models").mkdir()
    for name in ("vit_b", "vit_t", "tiny"):
        (root / "models" / name).symlink_to(tiny_model_dir)
    (root / "wall.jpg").write_bytes(photo)
    return root


def run_steps(root: Path, steps: list[tuple[str, str]], timeout_s: float = 900) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run the steps in one bash session inside a new network namespace; stop at the first failure.

    Each step's stdout, stderr and exit code are kept; the harness kills what the steps left running.
    """
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--net", "--map-root-user", "true"],
                                                         capture_output=True, check=False).returncode != 0:
        pytest.fail("these tests need `unshare --net --map-root-user` (util-linux) to give the examples their ports")
    results = root / ".steps"
    results.mkdir()
    # -e: a command that fails in the middle of a block fails its step, not only the block's last command;
    # the EXIT trap records the exit code of the step that was running when the shell stopped.
    on_exit = ("trap 'rc=$?; [ -z \"$step\" ] || [ -e .steps/$step.rc ] || echo $rc > .steps/$step.rc; "
               "kill $(jobs -p) 2>/dev/null; wait' EXIT")
    script = ["set -eu", "step=", on_exit, "ip link set lo up", f"cd {shlex.quote(str(root))}"]
    for name, text in steps:
        script += [f"step={name}", f"{{\n{text}\n}} > .steps/{name}.out 2> .steps/{name}.err", f"echo 0 > .steps/{name}.rc"]
    home = root.parent / "home"
    home.mkdir(exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV", "PYTHON"))},
           "HOME": str(home), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    process = subprocess.Popen(["unshare", "--net", "--map-root-user", "bash", "-c", "\n".join(script)], env=env,
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
    finally:
        try:  # whatever the steps left running is in this session's process group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, text in steps:
        if (results / f"{name}.rc").exists():
            ran[name] = subprocess.CompletedProcess(text, int((results / f"{name}.rc").read_text()),
                                                    (results / f"{name}.out").read_text(),
                                                    (results / f"{name}.err").read_text())
    failed = [f"{name} (exit {r.returncode}):\n{r.args}\n{r.stderr[-3000:]}" for name, r in ran.items() if r.returncode]
    assert not failed and len(ran) == len(steps), "\n".join(failed) or f"only {list(ran)} ran: {output}"
    return ran


def test_readme_endpoint_examples(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    readme = REPO / "README.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    serve = block_with(readme, "bash", "python inference.py serve --model-dir models/vit_b --port 8080")
    json_curl = block_with(readme, "bash", "curl", "--data-binary @request.json")
    raw_curl = block_with(readme, "bash", "curl", "--data-binary @wall.jpg", "image_id", "timings_ms", "mask_format=png1")
    cli = block_with(readme, "bash", "python sagemaker_client.py", "--endpoint-url http://127.0.0.1:8080", "--follow-up")
    mobile = block_with(readme, "bash", "--save-embedding wall.npz", "--embedding wall.npz")
    snippet = block_with(readme, "python", "SageMakerSAMClient")
    (root / "snippet.py").write_text(snippet)
    wait = "until curl -sf http://127.0.0.1:8080/ping; do sleep 0.2; done"
    ran = run_steps(root, [("serve", f"{{\n{serve}}} > server.log 2>&1 &"), ("wait", wait), ("json_curl", json_curl),
                           ("raw_curl", raw_curl), ("cli", cli), ("mobile", mobile), ("python", "python snippet.py")])

    first = json.loads(ran["json_curl"].stdout)
    assert re.fullmatch(r"[0-9a-f]{32}", first["image_id"]) and "encoder_ms" in first["timings_ms"]
    assert len(first["clicks"]) == 2 and first["warnings"] == [RANDOM_WEIGHTS_WARNING]
    follow = json.loads(ran["raw_curl"].stdout)
    assert follow["cache_hit"] is True and "encoder_ms" not in follow["timings_ms"]
    report = json.loads(ran["cli"].stdout)
    assert report["follow_up_cache_hit"] is True and "Traceback" not in ran["cli"].stderr
    assert Image.open(root / "out" / "mask.png").size == (3024, 4032)
    assert Image.open(root / "out" / "result.webp").size == (3024, 4032)
    # The mobile flow: the same taps with the saved float16 embedding give the photo's mask (float16: IoU).
    assert _first_json(ran["mobile"].stdout)["dtype"] == "float16"
    photo_mask, tapped = decode_mask((root / "out" / "mask.png").read_bytes()), decode_mask(
        (root / "out" / "taps" / "mask.png").read_bytes())
    assert photo_mask.any() and (photo_mask & tapped).sum() / (photo_mask | tapped).sum() >= 0.99
    assert not (root / "out" / "taps" / "result.webp").exists()
    image_id, cache_hit, *_ = ran["python"].stdout.split(maxsplit=2)
    assert image_id == first["image_id"] and cache_hit == "True"  # same photo, same id; the follow-up hit the cache
    assert re.fullmatch(r"[0-9a-f]{32}", ran["python"].stdout.strip().splitlines()[-1])  # the closed session's id


def test_readme_go_backend_example(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    """The "Go backend" block against the endpoint the README starts (needs Go; CI installs it)."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (CI installs golang-go and golang-github-aws-aws-sdk-go-v2-dev)")
    readme = REPO / "README.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    serve = block_with(readme, "bash", "python inference.py serve --model-dir models/vit_b --port 8080")
    go_block = block_with(readme, "bash", "make go-client", "bin/holds-extract")
    wait = "until curl -sf http://127.0.0.1:8080/ping; do sleep 0.2; done"
    ran = run_steps(root, [("serve", f"{{\n{serve}}} > server.log 2>&1 &"), ("wait", wait), ("go", go_block)])

    report = json.loads(ran["go"].stdout.strip().splitlines()[-1])
    assert report["follow_up_cache_hit"] is True and report["cache_hit"] is False
    command = command_starting(go_block, "AWS_REGION=")
    points = [(float(x), float(y)) for x, y in (p.split(",") for p in command.split('-points "')[1].split('"')[0].split(";"))]
    mask = decode_mask((root / "out" / "go" / "mask.png").read_bytes())
    assert mask.shape == (4032, 3024) and np.array_equal(mask, in_process_mask(tiny_model_dir, phone_photo, points))
    cutout = Image.open(root / "out" / "go" / "result.webp")
    assert cutout.mode == "RGBA" and cutout.size == (3024, 4032)
    assert (root / "out" / "go" / "follow_up_mask.png").is_file()

def test_readme_shared_cache_example(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    """Two instances on one redis-server: the second answers the first's photo by image_id."""
    readme = REPO / "README.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    block = block_with(readme, "bash", "redis-server", "SAM_SHARED_CACHE_URL", "--port 8081", "shared_cache.writes")
    ran = run_steps(root, [("shared", block)])
    follow, stats = (json.loads(text) for text in re.findall(r"^\{.*?^\}", ran["shared"].stdout, re.MULTILINE | re.DOTALL))
    assert follow["cache_hit"] is True and re.fullmatch(r"[0-9a-f]{32}", follow["image_id"])
    assert stats == {"encoder_runs": 1, "shared_cache": {"hits": 1, "misses": 0, "errors": 0}}  # the warm-up's run only


#: moto_server and a VPC's subnet and security group in it: what the cache creation block assumes exists.
MOTO_VPC_STAND_INS = """moto_server -H 127.0.0.1 -p 5000 > moto.log 2>&1 &
until curl -s -o /dev/null http://127.0.0.1:5000; do sleep 0.2; done
export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \\
  AWS_DEFAULT_REGION=us-east-1
vpc=$(aws ec2 create-vpc --cidr-block 10.0.0.0/16 --query Vpc.VpcId --output text)
export VPC_SUBNET_IDS=$(aws ec2 create-subnet --vpc-id $vpc --cidr-block 10.0.1.0/24 --query Subnet.SubnetId --output text)
export VPC_SECURITY_GROUP_IDS=$(aws ec2 create-security-group --group-name sam --description sam --vpc-id $vpc \\
  --query GroupId --output text)"""


def test_readme_sagemaker_shared_cache_creation(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    """The guide's ElastiCache (Valkey) and Secrets Manager commands, against moto_server; the VPC's
    subnet and security group are the harness's stand-ins (no README block creates a VPC)."""
    guide = REPO / "README_SAGEMAKER.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    create = block_with(guide, "bash", "aws elasticache create-replication-group")
    stand_ins = MOTO_VPC_STAND_INS
    check = "aws secretsmanager describe-secret --secret-id sam/shared-cache --query Name --output text"
    ran = run_steps(root, [("stand_ins", stand_ins), ("create", create), ("check", check)])
    settings = dict(line.split("=", 1) for line in (root / ".env").read_text().splitlines())
    assert re.fullmatch(r"rediss://master\.sam-embeddings\.[a-z0-9.]+:6379/0", settings["SHARED_CACHE_URL"])
    assert settings["SHARED_CACHE_SECRET_ID"] == "sam/shared-cache" and ran["check"].stdout.strip() == "sam/shared-cache"


def test_readme_sagemaker_deploy_and_invoke_examples(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    guide = REPO / "README_SAGEMAKER.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    rehearse = block_with(guide, "bash", "moto_server", "deploy_to_sagemaker.sh")
    finish = block_with(guide, "bash", "deploy_to_sagemaker.sh S3_BUCKET=rehearsal delete")
    settings = block_with(guide, "bash", "S3_BUCKET=my-climbing-bucket", "AWS_REGION=")
    deploy = block_with(guide, "bash", "./deploy_to_sagemaker.sh --dry-run model config endpoint")
    invoke = block_with(guide, "bash", "python sagemaker_client.py", "--health")
    dry_run = command_starting(deploy, "./deploy_to_sagemaker.sh --dry-run")
    status = command_starting(deploy, "./deploy_to_sagemaker.sh status")
    help_command = command_starting(deploy, "./deploy_to_sagemaker.sh --help")
    realtime = command_starting(invoke, "python sagemaker_client.py --endpoint-name sam-climbing-endpoint --region")
    asynchronous = command_starting(invoke, "python sagemaker_client.py --endpoint-name sam-climbing-endpoint --async")
    health = command_starting(invoke, "python sagemaker_client.py --endpoint-name sam-climbing-endpoint --health")
    bucket = re.search(r"--bucket (\S+)", asynchronous).group(1)  # type: ignore[union-attr]
    # Not in the guide: an asynchronous endpoint for its --async example, made the documented way.
    async_endpoint = ("PATH=$PWD/.venv/bin:$PATH ./deploy_to_sagemaker.sh S3_BUCKET=rehearsal delete && "
                      f".venv/bin/aws s3 mb s3://{bucket} && PATH=$PWD/.venv/bin:$PATH ./deploy_to_sagemaker.sh "
                      f"--mode async S3_BUCKET={bucket} MODEL_DIR=models/tiny IMAGE_URI=local:cpu POLL_S=1 model config endpoint")
    ran = run_steps(root, [
        ("rehearse", rehearse), ("realtime", realtime), ("health", health), ("settings", f"cat > .env <<'EOF'\n{settings}EOF"),
        ("dry_run", dry_run), ("status", status), ("help", help_command), ("async_endpoint", async_endpoint),
        ("asynchronous", asynchronous), ("finish", finish)])

    assert "test passed" in ran["rehearse"].stderr
    assert Image.open(root / ".deploy" / "test-output" / "mask.png").size == (3024, 4032)
    report = json.loads(ran["realtime"].stdout)
    assert report["follow_up_cache_hit"] is True and Image.open(root / "out" / "mask.png").size == (3024, 4032)
    assert json.loads(ran["health"].stdout)["status"] == "InService"
    planned = ran["dry_run"].stdout
    assert "DRY-RUN: aws sagemaker update-endpoint --endpoint-name sam-climbing-endpoint" in planned  # it exists
    assert "--retain-all-variant-properties" in planned and "deregister-scalable-target" in planned
    assert ".dkr.ecr.us-east-1.amazonaws.com/sam-climbing:gpu-" in planned  # the image `image` would push
    assert '"Status": "InService"' in ran["status"].stdout
    assert ran["help"].stdout.startswith("Deploy the SAM hold-extraction endpoint")
    assert "async_s" in json.loads(ran["asynchronous"].stdout)
    assert "deleted sam-climbing-endpoint" in ran["finish"].stderr


def test_readme_sagemaker_ab_test_and_batch_examples(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:
    """Sections 10 and 11 as written, on top of section 6's rehearsal and section 3's .env: a container per
    variant, the single-variant endpoint turned into an A/B test, shift, a pinned client, promote, then a
    batch transform of request files written by the client."""
    guide = REPO / "README_SAGEMAKER.md"
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    rehearse = block_with(guide, "bash", "moto_server", "deploy_to_sagemaker.sh")
    settings = block_with(guide, "bash", "S3_BUCKET=my-climbing-bucket", "AWS_REGION=")
    variants = block_with(guide, "bash", "rehearsal.data_plane --variant Primary=")
    ab_env = block_with(guide, "bash", "cat > ab.env")
    ab = block_with(guide, "bash", "--env-file ab.env all")
    batch = block_with(guide, "bash", "--save-request", "deploy_to_sagemaker.sh package batch")
    finish = block_with(guide, "bash", "deploy_to_sagemaker.sh S3_BUCKET=rehearsal delete")
    steps = [("rehearse", rehearse), ("settings", f"cat > .env <<'EOF'\n{settings}EOF"), ("variants", variants),
             ("ab_env", ab_env)]
    for name in ("all", "status", "shift", "promote"):
        steps.append((name, command_starting(ab, f"./deploy_to_sagemaker.sh --env-file ab.env {name}")))
    steps.insert(-1, ("client", command_starting(ab, "python sagemaker_client.py")))
    steps += [("batch", batch), ("finish", finish)]
    ran = run_steps(root, steps)

    assert "test passed for variant Primary" in ran["all"].stderr and "test passed for variant Challenger" in ran["all"].stderr
    assert "updating it in place" in ran["all"].stderr  # section 6's single-variant endpoint became the A/B test
    status = _first_json(ran["status"].stdout)
    assert [(v["Name"], v["Weight"]) for v in status["Variants"]] == [("Primary", 90.0), ("Challenger", 10.0)]
    assert "traffic now: Primary 50% (weight 50), Challenger 50% (weight 50)" in ran["shift"].stderr
    report = json.loads(ran["client"].stdout)
    assert report["variant"] == "Challenger" and report["follow_up_variant"] == "Challenger"
    assert Image.open(root / "out-ab" / "mask.png").size == (3024, 4032)
    assert "promoted Challenger" in ran["promote"].stderr
    assert "Completed: all 2 request files answered" in ran["batch"].stderr
    wall_1 = next(c for c in commands(batch) if c.endswith("--save-request batch/wall-1.zip"))  # its answer: batch-out/
    clicks = wall_1.split('"')[1]
    points = [(float(x), float(y)) for x, y in (pair.split(",") for pair in clicks.split(";"))]
    want = in_process_mask(tiny_model_dir, phone_photo, points)
    assert np.array_equal(decode_mask((root / "batch-out" / "mask_image.bin").read_bytes()), want)
    assert "deleted sam-climbing-endpoint" in ran["finish"].stderr


def _first_json(text: str) -> dict[str, Any]:
    """The first JSON object printed (``status`` prints the endpoint, then its scaling policies)."""
    document, _ = json.JSONDecoder().raw_decode(text.lstrip())
    return document  # type: ignore[no-any-return]

"""The main job, end to end on this machine (``make demo``).

1. Export vit_b to ONNX: the official checkpoint when it can be downloaded (or CHECKPOINT=path
   is given); otherwise seeded random weights, with a loud warning that masks are meaningless.
2. Generate a 12 MP synthetic wall photo (JPEG with EXIF orientation).
3. Start the local endpoint (``python inference.py serve``) and wait for /ping.
4. Send the photo with several clicks through ``sagemaker_client.py`` (boto3, the same calls
   as against AWS), then follow-up clicks in the same session; write the result and mask
   PNGs under out/demo and print the latency of the first and the follow-up requests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.manifest import sha256_of_file
from serving.local_endpoint import start_local_endpoint
from synthetic.wall_photo import wall_photo

BANNER = "!" * 78


def reusable(weights: dict[str, Any] | None, checkpoint: Path | None) -> bool:
    """Whether an existing export (its manifest's ``weights``) already has the weights asked for.

    With a checkpoint: only an export of that very file (same SHA-256). Without: any export of
    real weights; a random-weights export is not reused (the official download is tried again).
    """
    if weights is None:
        return False
    if checkpoint is not None:
        return weights.get("origin") in ("checkpoint", "official") and weights.get("sha256") == sha256_of_file(checkpoint)
    return weights.get("origin") in ("checkpoint", "official")


def export_model(model_type: str, out: Path, checkpoint: Path | None) -> str:
    """Export unless ``out`` already holds the weights asked for; returns the weights' origin."""
    manifest = out / "manifest.json"
    existing = json.loads(manifest.read_text())["weights"] if manifest.is_file() else None
    if checkpoint is not None and not checkpoint.is_file():
        raise SystemExit(f"error: CHECKPOINT {checkpoint} does not exist")
    if reusable(existing, checkpoint):
        assert existing is not None
        print(f"[demo] reusing the {model_type} export in {out} ({existing['origin']} weights, "
              f"SHA-256 {str(existing.get('sha256'))[:12]})", flush=True)
        return str(existing["origin"])
    cli = [sys.executable, str(REPO / "export" / "export_sam.py"), "--model-type", model_type, "--output", str(out)]
    if checkpoint is not None:
        print(f"[demo] exporting {model_type} from {checkpoint} (the existing export in {out} has other weights)"
              if existing else f"[demo] exporting {model_type} from {checkpoint}", flush=True)
        subprocess.run([*cli, "--checkpoint", str(checkpoint)], check=True)
        return "checkpoint"
    print(f"[demo] exporting {model_type} with the official checkpoint (download, SHA-256 checked)...", flush=True)
    if subprocess.run(cli, check=False).returncode == 0:
        return "official"
    print(f"\n{BANNER}\n[demo] WARNING: the official {model_type} checkpoint could not be downloaded.\n"
          f"[demo] Falling back to RANDOM WEIGHTS: the pipeline runs end to end, but the masks\n"
          f"[demo] are MEANINGLESS. Pass CHECKPOINT=/path/to/sam_{model_type}_*.pth for real masks.\n{BANNER}\n",
          flush=True)
    if existing is not None and existing.get("origin") == "random":
        print(f"[demo] reusing the random-weights export in {out}", flush=True)
        return "random"
    subprocess.run([*cli, "--random-weights"], check=True)
    return "random"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--checkpoint", type=Path, default=os.environ.get("CHECKPOINT") or None,
                        help="a SAM checkpoint (.pth; make demo CHECKPOINT=...): re-exported when models/<type> has other weights")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--keep-serving", action="store_true",
                        help="keep the endpoint running afterwards (tap holds at /playground) until Ctrl-C")
    args = parser.parse_args()

    model_dir = REPO / "models" / args.model_type
    origin = export_model(args.model_type, model_dir, args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    photo = wall_photo(seed=7)
    image_path = args.out / "wall.jpg"
    image_path.write_bytes(photo.jpeg)
    clicks = photo.clicks(args.clicks + 2)
    first, follow = clicks[: args.clicks], clicks[args.clicks:]
    print(f"[demo] wall photo {image_path} ({len(photo.jpeg) / 1e6:.1f} MB, upright {photo.upright_size_wh[0]}x"
          f"{photo.upright_size_wh[1]}, EXIF orientation 6), {len(first)} clicks then {len(follow)} follow-up clicks")

    env = {"SAM_LOG_FORMAT": "text"}  # the client needs no AWS set-up for a local endpoint
    start = time.monotonic()
    server = start_local_endpoint(model_dir, args.out / "server.log", env, deadline_s=600)
    url = server.url
    try:
        ready_s = time.monotonic() - start
        print(f"[demo] local endpoint {url} ready in {ready_s:.1f} s (model loaded and warmed up)")
        points = ";".join(f"{x},{y}" for x, y in first)
        follow_points = ";".join(f"{x},{y}" for x, y in follow)
        client = subprocess.run(
            [sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint",
             "--endpoint-url", url, "--test-image", str(image_path),
             "--points", points, "--follow-up", follow_points, "--out-dir", str(args.out)],
            env={**os.environ, **env}, capture_output=True, text=True, check=False)
        print(client.stdout, end="")
        print(client.stderr, end="", file=sys.stderr)
        if client.returncode != 0:
            return client.returncode
        report = json.loads(client.stdout)
        print(f"[demo] first request (new photo, encoder + {len(first)} clicks): {report['first_request_s']:.2f} s; "
              f"follow-up ({len(follow)} clicks, cached embedding): {report['follow_up_s']:.2f} s")
        print(f"[demo] outputs: {', '.join(report['files'])}")
        if origin == "random":
            print(f"{BANNER}\n[demo] REMINDER: random weights were used; the masks are meaningless.\n{BANNER}")
        if args.keep_serving:
            print(f"[demo] tap holds at {url}/playground (API: {url}/docs); Ctrl-C stops the endpoint", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.process.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build ``model.tar.gz`` for SageMaker and upload it to S3.

    python package_model.py --model-dir models/vit_b [--output-dir model_artifacts] \\
        [--s3-bucket B --s3-key sam-climbing/model.tar.gz] [--region us-east-1]

The archive holds the exported model at its root (``manifest.json``, the ONNX files and
their external data, and ``trt-cache/`` when the model directory has prebuilt TensorRT
engines: ``runtime/trt_cache.py``) and ``code/`` (``inference.py``, ``runtime/``, ``serving/``,
``requirements.txt``), so AWS's prebuilt containers can run it as well as ours. The model
directory is checked against its manifest first. The archive is deterministic (sorted
entries, fixed times and owners), so the same content has the same SHA-256; an upload is
skipped when S3 already holds an object with that checksum.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))

from runtime.errors import ModelLoadError
from runtime.manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_of_file
from runtime.trt_cache import SHIPPED_ENGINES_DIR

CODE_PACKAGES = ("runtime", "serving")
MULTIPART_CHUNK_BYTES = 64 * 1024 * 1024


def requirements_text() -> str:
    """``requirements-sagemaker.txt`` with its ``-r`` includes inlined (pip in AWS's containers)."""

    def expand(path: Path) -> list[str]:
        lines = []
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("-r "):
                lines += expand(path.parent / stripped[3:].strip())
            elif stripped and not stripped.startswith("#"):
                lines.append(stripped)
        return lines

    return "\n".join(expand(REPO / "requirements-sagemaker.txt")) + "\n"


def _model_files(model_dir: Path, manifest: Manifest) -> list[Path]:
    """The manifest, its graphs and external data, and prebuilt TensorRT engines (``trt-cache/``)."""
    files = [model_dir / MANIFEST_NAME]
    for model in manifest.models.values():
        files.append(model_dir / model.file)
        if model.external_data:
            files.append(model_dir / model.external_data)
    engines = model_dir / SHIPPED_ENGINES_DIR
    files += sorted(path for path in engines.iterdir() if path.is_file()) if engines.is_dir() else []
    return files


def _code_files() -> list[tuple[Path, str]]:
    files = [(REPO / "inference.py", "code/inference.py")]
    for package in CODE_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            files.append((path, f"code/{path.relative_to(REPO).as_posix()}"))
    return files


def _add(archive: tarfile.TarFile, name: str, data: bytes | None = None, path: Path | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode = 0o644
    if path is not None:
        info.size = path.stat().st_size
        with path.open("rb") as handle:
            archive.addfile(info, handle)
    else:
        assert data is not None
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def build_archive(model_dir: Path, output_dir: Path) -> tuple[Path, str]:
    """Validate ``model_dir`` and write ``output_dir/model.tar.gz``; return (path, sha256)."""
    manifest = load_manifest(model_dir, verify_checksums=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / "model.tar.gz"
    partial = target.with_suffix(".gz.part")
    with partial.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0, filename="") as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in _model_files(model_dir, manifest):
            _add(archive, path.relative_to(model_dir).as_posix(), path=path)
        for path, name in _code_files():
            _add(archive, name, path=path)
        _add(archive, "code/requirements.txt", requirements_text().encode())
    partial.replace(target)
    return target, sha256_of_file(target)


def upload(path: Path, digest: str, bucket: str, key: str, region: str | None = None) -> tuple[str, bool]:
    """Upload with multipart and a SHA-256 checksum unless S3 holds the same content; (uri, uploaded)."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", region_name=region)
    uri = f"s3://{bucket}/{key}"
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get("sha256") == digest:
            return uri, False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    config = TransferConfig(multipart_threshold=MULTIPART_CHUNK_BYTES, multipart_chunksize=MULTIPART_CHUNK_BYTES)
    s3.upload_file(str(path), bucket, key, Config=config,
                   ExtraArgs={"Metadata": {"sha256": digest}, "ChecksumAlgorithm": "SHA256",
                              "ContentType": "application/gzip"})
    return uri, True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an export of export/export_sam.py")
    parser.add_argument("--output-dir", type=Path, default=Path("model_artifacts"))
    parser.add_argument("--s3-bucket")
    parser.add_argument("--s3-key", default="sam-climbing/model.tar.gz")
    parser.add_argument("--region")
    args = parser.parse_args(argv)
    try:
        path, digest = build_archive(args.model_dir, args.output_dir)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    if args.s3_bucket:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            uri, uploaded = upload(path, digest, args.s3_bucket, args.s3_key, args.region)
        except (ClientError, BotoCoreError) as exc:
            print(f"error: upload to s3://{args.s3_bucket}/{args.s3_key} failed: {exc}", file=sys.stderr)
            return 1
        print(f"{'uploaded to' if uploaded else 'unchanged, already at'} {uri}")
        print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())

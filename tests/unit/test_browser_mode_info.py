"""GET /playground/browser-mode.json's answer (``serving.pages.browser_mode``): whether the page can
decode taps itself, and, when it cannot, why in words the page shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from serving.pages import WEB_DECODER_URL, browser_mode, web_decoder_file
from serving.web_runtime import WEB_RUNTIME_FILES, WEB_RUNTIME_RECORD, web_runtime_status


def _runtime(folder: Path, version: str = "1.30.0") -> Path:
    folder.mkdir()
    for name in WEB_RUNTIME_FILES:
        (folder / name).write_bytes(b"stand-in")
    (folder / WEB_RUNTIME_RECORD).write_text(json.dumps({"package": "onnxruntime-web", "version": version}))
    return folder


def test_a_missing_runtime_names_the_files_and_the_make_target(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path / "ort")
    (runtime / "ort-wasm-simd-threaded.wasm").unlink()
    info = browser_mode(tmp_path / "no-model", runtime)
    assert info["available"] is False and info["runtime"]["available"] is False  # type: ignore[index]
    assert info["runtime"]["missing"] == ["ort-wasm-simd-threaded.wasm"]  # type: ignore[index]
    assert "make web-runtime" in info["runtime"]["reason"]  # type: ignore[index]
    assert "ort-wasm-simd-threaded.wasm missing" in info["runtime"]["reason"]  # type: ignore[index]


def test_an_unreadable_record_counts_as_missing(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path / "ort")
    (runtime / WEB_RUNTIME_RECORD).write_text("{not json")
    status = web_runtime_status(runtime)
    assert not status.available and status.missing == (WEB_RUNTIME_RECORD,) and status.version is None
    assert web_runtime_status(_runtime(tmp_path / "ok", "1.30.0")).version == "1.30.0"


def test_the_model_decides_the_decoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    runtime = _runtime(tmp_path / "ort")
    info = browser_mode(tiny_model_dir, runtime)
    assert info["available"] is True
    assert info["decoder"] == {"available": True, "url": WEB_DECODER_URL, "reason": "", "mask_threshold": 0.0,
                               "precision": "fp32"}  # the tiny model's int8 decoder fails parity (random weights)
    assert info["runtime"]["version"] == "1.30.0" and info["runtime"]["module"] == "/static/ort/ort.wasm.min.mjs"  # type: ignore[index]

    older = tmp_path / "older-export"
    shutil.copytree(tiny_model_dir, older)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["models"]["decoder_web"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    info = browser_mode(older, runtime)
    assert info["available"] is False
    assert info["decoder"]["reason"] == "this model was exported without decoder_web.onnx: re-export it"  # type: ignore[index]
    assert "no readable manifest" in browser_mode(tmp_path / "nowhere", runtime)["decoder"]["reason"]  # type: ignore[index]


def test_the_int8_decoder_is_served_only_when_its_parity_says_used(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["parity"]["decoder_web_int8"]["used"] is False  # recorded: random weights miss 0.99
    assert manifest["parity"]["decoder_web_int8"]["prompts"] > 10
    assert web_decoder_file(model).path == model / "decoder_web.onnx"
    manifest["parity"]["decoder_web_int8"]["used"] = True
    (model / "manifest.json").write_text(json.dumps(manifest))
    chosen = web_decoder_file(model)
    assert chosen.path == model / "decoder_web_int8.onnx" and chosen.precision == "int8"
    del manifest["models"]["decoder_web_int8"]  # a copy without the file's entry (the cone test model)
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert web_decoder_file(model).path == model / "decoder_web.onnx"

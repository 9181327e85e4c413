"""Registry of SAM model types: architecture builders and official checkpoints.

``MODEL_TYPES`` maps a model type to its ``ModelSpec``; the CLI offers exactly its keys.
``tiny`` is SAM's own architecture (same prompt encoder and mask decoder, 256x64x64
embeddings) with a very small ViT, for tests and smoke runs; it has no official weights.
``vit_t`` is MobileSAM: a TinyViT image encoder with SAM's prompt encoder and mask decoder,
built from the ``mobilesam-mirror`` package (a packaging mirror of MobileSAM's code).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import Sam


@dataclass(frozen=True)
class ModelSpec:
    """One model type: encoder shape and, for real types, its official checkpoint."""

    model_type: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    checkpoint_url: str | None = None
    checkpoint_sha256: str | None = None
    family: Literal["sam", "mobile_sam"] = "sam"

    def build(self) -> Sam:
        """Build the architecture with PyTorch's default (unseeded) initialization."""
        if self.family == "mobile_sam":
            with warnings.catch_warnings():  # timm deprecation notices from MobileSAM's imports
                warnings.simplefilter("ignore")
                from mobile_sam.build_sam import build_sam_vit_t

            return build_sam_vit_t(checkpoint=None)  # type: ignore[no-any-return]
        return _build_sam(
            encoder_embed_dim=self.encoder_embed_dim,
            encoder_depth=self.encoder_depth,
            encoder_num_heads=self.encoder_num_heads,
            encoder_global_attn_indexes=list(self.encoder_global_attn_indexes),
            checkpoint=None,
        )


_OFFICIAL = "https://dl.fbaipublicfiles.com/segment_anything/"

MODEL_TYPES: dict[str, ModelSpec] = {
    "vit_b": ModelSpec(
        "vit_b", 768, 12, 12, (2, 5, 8, 11),
        _OFFICIAL + "sam_vit_b_01ec64.pth",
        "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
    ),
    "vit_l": ModelSpec(
        "vit_l", 1024, 24, 16, (5, 11, 17, 23),
        _OFFICIAL + "sam_vit_l_0b3195.pth",
        "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
    ),
    "vit_h": ModelSpec(
        "vit_h", 1280, 32, 16, (7, 15, 23, 31),
        _OFFICIAL + "sam_vit_h_4b8939.pth",
        "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    ),
    "vit_t": ModelSpec(
        "vit_t", 64, 0, 0, (),
        "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        family="mobile_sam",
    ),
    "tiny": ModelSpec("tiny", 64, 2, 2, (1,)),
}

#: Patch-embedding width of each ViT type, to name the type a mismatched checkpoint belongs to.
_TYPE_BY_EMBED_DIM = {spec.encoder_embed_dim: name for name, spec in MODEL_TYPES.items() if spec.family == "sam"}
#: A key only TinyViT (MobileSAM) checkpoints have.
_TINYVIT_KEY = "image_encoder.patch_embed.seq.0.c.weight"


class CheckpointMismatch(ValueError):
    """A checkpoint whose tensors do not fit the requested model type."""


class CheckpointUnreadable(ValueError):
    """A file that is not a loadable PyTorch checkpoint (corrupt, truncated, not a state dict)."""


def build_random(model_type: str, seed: int) -> Sam:
    """The architecture with seeded random weights, in eval mode.

    SAM initializes its positional embeddings and relative-position tables to zero; those
    get small seeded noise too, so that parity checks exercise every path of the graph.
    """
    spec = MODEL_TYPES[model_type]
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = spec.build()
        with torch.no_grad():
            for param in model.parameters():
                if not torch.any(param):
                    param.normal_(0.0, 0.02)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def checkpoint_type(state: dict[str, Any]) -> str | None:
    """The model type a state dict belongs to, from its patch embedding (None if unknown)."""
    if _TINYVIT_KEY in state:
        return "vit_t"
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    width = int(patch.shape[0])
    return _TYPE_BY_EMBED_DIM.get(width, f"an encoder of width {width}")


def predictor_for(model_type: str, sam: Sam) -> Any:
    """The reference ``SamPredictor`` of the model's own package (MobileSAM's for vit_t)."""
    if MODEL_TYPES[model_type].family == "mobile_sam":
        from mobile_sam import SamPredictor as MobileSamPredictor

        return MobileSamPredictor(sam)
    from segment_anything import SamPredictor

    return SamPredictor(sam)


def load_checkpoint(model_type: str, path: Path) -> Sam:
    """Build ``model_type`` and load a SAM state dict from ``path`` (strictly), in eval mode.

    Raises ``CheckpointMismatch`` naming the model type the file seems to belong to.
    """
    spec = MODEL_TYPES[model_type]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointUnreadable(f"cannot read checkpoint {path}: {_unreadable_reason(exc)}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointMismatch(f"{path} does not hold a state dict")
    found = checkpoint_type(state)
    if found is None:
        raise CheckpointMismatch(f"{path} is not a SAM or MobileSAM checkpoint (no image encoder patch embedding)")
    if found != model_type:
        raise CheckpointMismatch(f"{path} is a {found} checkpoint, not {model_type}")
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise CheckpointMismatch(f"{path} does not fit {model_type}: {' '.join(first)}") from exc
    return model.eval()


def _unreadable_reason(exc: Exception) -> str:
    """Why ``torch.load`` refused a file, in words (torch's own text can be a bare number)."""
    text = str(exc).strip()
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    if "Weights only load failed" in text or "weights_only" in text:
        return ("it holds Python objects, not only tensors; only plain state dicts are loaded"
                " (torch.load weights_only=True), as in the official sam_vit_*.pth files")
    detail = f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
    return f"it is not a PyTorch checkpoint (.pth) file ({detail})"


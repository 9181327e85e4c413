"""A synthetic but realistic climbing-wall photo: textured plywood, T-nut grid, many holds.

    python -m synthetic.wall_photo --out wall.jpg [--width 3024 --height 4032] [--seed 0]

The upright photo is portrait (3024x4032 by default, a 12 MP phone shot) and is stored as a
phone stores it: the sensor's landscape pixels (4032x3024) plus EXIF orientation 6
("rotate 90 degrees clockwise to view"). Holds are coloured, star-convex blobs with shading,
chalk and a bolt; their centres, in the upright frame, are the clicks a climber would tap.
Everything is seeded and deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

PALETTE = {
    "red": (200, 30, 40), "blue": (30, 80, 200), "yellow": (235, 200, 30), "green": (40, 160, 70),
    "orange": (240, 120, 20), "purple": (120, 50, 160), "pink": (240, 110, 170), "black": (30, 30, 35),
    "white": (235, 235, 230), "teal": (20, 150, 150),
}
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Hold:
    """One hold: colour name, centre (x, y) and radius in upright pixels."""

    colour: str
    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class WallPhoto:
    """The encoded photo (JPEG bytes with EXIF orientation), its upright size and its holds."""

    jpeg: bytes
    upright_size_wh: tuple[int, int]
    holds: tuple[Hold, ...]

    def clicks(self, count: int) -> list[tuple[float, float]]:
        """The centres of the ``count`` largest holds: (x, y) in upright pixels."""
        ordered = sorted(self.holds, key=lambda h: -h.radius)[:count]
        return [(round(h.x, 1), round(h.y, 1)) for h in ordered]


def _noise(rng: np.random.Generator, size_wh: tuple[int, int], scale: int, stretch_x: float = 1.0) -> NDArray[np.float32]:
    """Smooth noise in [-1, 1] at ``size_wh``: random values on a coarse grid, resized bicubically."""
    width, height = size_wh
    coarse_w = max(2, int(width / scale / stretch_x))
    coarse_h = max(2, int(height / scale))
    coarse = rng.uniform(-1, 1, (coarse_h, coarse_w)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image), -1, 1)


def _board(rng: np.random.Generator, size_wh: tuple[int, int]) -> NDArray[np.uint8]:
    width, height = size_wh
    small = (max(8, width // 4), max(8, height // 4))
    grain = _noise(rng, small, scale=6, stretch_x=8.0) * 14 + _noise(rng, small, scale=40) * 10
    base = np.array([196, 172, 132], np.float32) + rng.uniform(-15, 15, 3)
    board = base[None, None, :] + grain[..., None]
    panel = max(1, small[0] // 2)
    for x in range(panel, small[0], panel):  # panel seams
        board[:, max(0, x - 1): x + 1] *= 0.55
    image = Image.fromarray(np.clip(board, 0, 255).astype(np.uint8)).resize(size_wh, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    pitch = max(12, width // 16)
    nut = max(1, pitch // 14)
    for row, y in enumerate(range(pitch // 2, height, pitch)):
        for x in range(pitch // 2 + (pitch // 2 if row % 2 else 0), width, pitch):
            draw.ellipse((x - nut, y - nut, x + nut, y + nut), fill=(45, 40, 35))
    return np.asarray(image, dtype=np.uint8)


def _hold_polygon(rng: np.random.Generator, hold: Hold, vertices: int = 48) -> list[tuple[float, float]]:
    """A star-convex blob: radius modulated by a few random harmonics, stretched and rotated."""
    angles = np.linspace(0, 2 * math.pi, vertices, endpoint=False)
    radius = np.ones(vertices)
    for harmonic in range(2, 6):
        radius += rng.uniform(0, 0.35 / harmonic * 2) * np.sin(harmonic * angles + rng.uniform(0, 2 * math.pi))
    stretch, turn = rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
    xs = hold.radius * radius * np.cos(angles)
    ys = hold.radius * radius * np.sin(angles) * stretch
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    return [(hold.x + x * cos_t - y * sin_t, hold.y + x * sin_t + y * cos_t) for x, y in zip(xs, ys)]


def render_wall(width: int = 3024, height: int = 4032, holds: int = 70, seed: int = 0) -> tuple[Image.Image, tuple[Hold, ...]]:
    """The upright wall (RGB, width x height) and its holds."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(_board(rng, (width, height)))
    shade = Image.new("L", (width, height), 0)
    placed: list[Hold] = []
    scale = min(width, height)
    for _ in range(holds * 20):
        if len(placed) == holds:
            break
        radius = float(rng.uniform(0.015, 0.07) * scale)
        x, y = float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))
        if all(math.hypot(x - h.x, y - h.y) > 1.15 * (radius + h.radius) for h in placed):
            placed.append(Hold(str(rng.choice(list(PALETTE))), x, y, radius))
    draw = ImageDraw.Draw(image)
    shade_draw = ImageDraw.Draw(shade)
    for hold in placed:
        polygon = _hold_polygon(rng, hold)
        offset = hold.radius * 0.12
        shade_draw.polygon([(px + offset, py + offset) for px, py in polygon], fill=110)
    shadow = shade.filter(ImageFilter.GaussianBlur(max(1, scale // 300)))
    image = Image.composite(Image.new("RGB", image.size, (20, 15, 10)), image, shadow.point(lambda v: v // 2))
    draw = ImageDraw.Draw(image)
    for hold in placed:
        colour = np.array(PALETTE[hold.colour], np.float32)
        polygon = _hold_polygon(np.random.default_rng(int(hold.x * 7 + hold.y * 13)), hold)
        draw.polygon(polygon, fill=tuple(int(c) for c in colour * 0.8))
        inner = [(hold.x + (px - hold.x) * 0.75 - hold.radius * 0.08, hold.y + (py - hold.y) * 0.75 - hold.radius * 0.08)
                 for px, py in polygon]
        draw.polygon(inner, fill=tuple(int(min(255, c * 1.05 + 12)) for c in colour))
        bolt = max(2, hold.radius * 0.1)
        draw.ellipse((hold.x - bolt, hold.y - bolt, hold.x + bolt, hold.y + bolt), fill=(60, 60, 65))
    chalk = _noise(rng, (max(8, width // 8), max(8, height // 8)), scale=3)
    chalk_mask = Image.fromarray((np.clip(chalk - 0.55, 0, 1) * 255 * 0.5).astype(np.uint8)).resize((width, height))
    image = Image.composite(Image.new("RGB", image.size, (245, 245, 240)), image, chalk_mask)
    return image, tuple(placed)


def wall_photo(width: int = 3024, height: int = 4032, holds: int = 70, seed: int = 0,
               quality: int = 88, orientation: int = 6) -> WallPhoto:
    """Render the upright wall and encode it as a phone does (rotated pixels + EXIF orientation).

    ``orientation`` 1 stores the upright pixels as they are; 6 stores them rotated 90 degrees
    counter-clockwise with orientation 6, so a viewer (and our decoder) turns them upright.
    """
    upright, placed = render_wall(width, height, holds, seed)
    if orientation not in (1, 6):
        raise ValueError("orientation must be 1 or 6")
    stored = upright if orientation == 1 else upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=quality, exif=exif, subsampling=2)
    return WallPhoto(buffer.getvalue(), (width, height), placed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JPEG file to write")
    parser.add_argument("--width", type=int, default=3024, help="upright width in pixels")
    parser.add_argument("--height", type=int, default=4032, help="upright height in pixels")
    parser.add_argument("--holds", type=int, default=70)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clicks", type=int, default=5, help="how many hold centres to print as clicks")
    args = parser.parse_args(argv)
    photo = wall_photo(args.width, args.height, args.holds, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(photo.jpeg)
    print(json.dumps({"file": str(args.out), "bytes": len(photo.jpeg), "upright_size": photo.upright_size_wh,
                      "clicks": photo.clicks(args.clicks)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

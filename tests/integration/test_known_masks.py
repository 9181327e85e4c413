"""Masks with a known answer through a real server: the cone model's disks (``tests.cone_model``).

Every mask, area, box, per-click mask and RLE is compared with SAM's own ``postprocess_masks``
of the cone's logits, with the numpy renderer and with the graphs on the CPU EP.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from pycocotools import mask as coco_mask

from synthetic.test_images import synthetic_image
from tests import cone_model as cone
from tests.integration.server import LocalEndpoint, start_server
from tests.reference import encode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2

SIZE_HW = (600, 800)
PHOTO = encode(synthetic_image(SIZE_HW, seed=5), "PNG")
#: Inside, overlapping, and at every edge and corner of the 800x600 photo (x = W and y = H are allowed).
CLICKS = [(300.0, 250.0), (330.0, 270.0), (0.0, 0.0), (800.0, 300.0), (400.0, 600.0), (800.0, 600.0)]


@pytest.fixture(scope="module", params=["numpy", "graph"])
def cone_server(cone_model_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[LocalEndpoint]:
    server = start_server(cone_model_dir, tmp_path_factory.mktemp("cone_server") / "server.log",
                          env={"SAM_CPU_PREPOST": request.param})
    yield server
    server.stop()


def post(server: LocalEndpoint, photo: bytes, clicks: list[tuple[float, float]], **options: Any) -> dict[str, Any]:
    outputs = {"result_format": "none", "mask_format": "png", "per_click_masks": True, **options.pop("outputs", {})}
    body = {"image_base64": base64.b64encode(photo).decode(), "points": [{"x": x, "y": y} for x, y in clicks],
            "outputs": outputs, **options}
    response = httpx.post(server.url + "/invocations", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def png_mask(data: str) -> NDArray[np.bool_]:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L")) > 0


def rle_mask(rle: dict[str, Any]) -> NDArray[np.bool_]:
    return np.asarray(coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}), bool)


def check_answer(answer: dict[str, Any], logits: NDArray[np.float32], kept: list[bool],
                 per_click: list[NDArray[np.bool_]], union: NDArray[np.bool_]) -> None:
    """The served union, per-click masks, areas, boxes and kept flags are SAM's (logits: K x H' x W')."""
    assert [click["kept"] for click in answer["clicks"]] == kept
    for k, click in enumerate(answer["clicks"]):
        box = None if click["bbox_xyxy"] is None else tuple(click["bbox_xyxy"])
        cone.assert_box_and_area_match(box, click["area"], logits[k])
        cone.assert_masks_match(per_click[k], logits[k])
    chosen = logits[np.asarray(kept)]
    cone.assert_masks_match(union, chosen.max(axis=0) if len(chosen) else np.full(union.shape, -1.0, np.float32))


def test_union_per_click_masks_boxes_and_areas(cone_server: LocalEndpoint) -> None:
    answer = post(cone_server, PHOTO, CLICKS)
    assert (answer["height"], answer["width"]) == SIZE_HW and not answer["empty"]
    logits = cone.reference_logits(CLICKS, SIZE_HW)
    check_answer(answer, logits, [True] * 6, [png_mask(m) for m in answer["per_click_masks_base64"]],
                 png_mask(answer["mask_image_base64"]))
    # The analytic answer: 31.25 px disks around the clicks (pixel centres inside the circle).
    assert answer["clicks"][0]["bbox_xyxy"] == [269, 219, 331, 281]
    assert answer["clicks"][2]["bbox_xyxy"] == [0, 0, 31, 31] and answer["clicks"][5]["bbox_xyxy"] == [769, 569, 800, 600]
    assert abs(answer["clicks"][0]["area"] - np.pi * 31.25**2) < 31.25


def test_min_area_drops_the_cut_disks_at_the_corners(cone_server: LocalEndpoint) -> None:
    min_area = int(np.pi * 31.25**2 / 3)  # more than a quarter disk, less than a half
    answer = post(cone_server, PHOTO, CLICKS, min_area=min_area)
    kept = [True, True, False, True, True, False]
    logits = cone.reference_logits(CLICKS, SIZE_HW)
    check_answer(answer, logits, kept, [png_mask(m) for m in answer["per_click_masks_base64"]],
                 png_mask(answer["mask_image_base64"]))


def test_max_side_and_rle(cone_server: LocalEndpoint) -> None:
    answer = post(cone_server, PHOTO, CLICKS, outputs={"mask_format": "rle", "max_side": 333})
    out_hw = (answer["height"], answer["width"])
    assert out_hw == (250, 333) and answer["mask_image_base64"] is None
    logits = cone.reference_logits(CLICKS, SIZE_HW, out_hw)
    check_answer(answer, logits, [True] * 6, [rle_mask(r) for r in answer["per_click_masks_rle"]],
                 rle_mask(answer["mask_rle"]))


def test_exif_rotated_photo_is_clicked_upright(cone_server: LocalEndpoint) -> None:
    """Stored rotated with EXIF orientation 6: clicks and masks are in the upright 800x600 frame."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(synthetic_image(SIZE_HW, seed=6), 1)))
    photo = encode(stored, "JPEG", quality=90, exif=exif)
    answer = post(cone_server, photo, CLICKS[:4])
    assert (answer["height"], answer["width"]) == SIZE_HW
    check_answer(answer, cone.reference_logits(CLICKS[:4], SIZE_HW), [True] * 4,
                 [png_mask(m) for m in answer["per_click_masks_base64"]], png_mask(answer["mask_image_base64"]))


def test_multimask_picks_the_best_scored_token(cone_server: LocalEndpoint) -> None:
    answer = post(cone_server, PHOTO, CLICKS[:2], multimask=True)
    assert [click["mask_token"] for click in answer["clicks"]] == [2, 2]
    check_answer(answer, cone.reference_logits(CLICKS[:2], SIZE_HW, token=2), [True, True],
                 [png_mask(m) for m in answer["per_click_masks_base64"]], png_mask(answer["mask_image_base64"]))


def test_follow_up_click_by_image_id(cone_server: LocalEndpoint) -> None:
    first = post(cone_server, PHOTO, CLICKS[:1])
    body = {"image_id": first["image_id"], "points": [{"x": 700.0, "y": 100.0}],
            "outputs": {"result_format": "none", "mask_format": "png"}}
    answer = httpx.post(cone_server.url + "/invocations", content=json.dumps(body),
                        headers={"Content-Type": "application/json"}, timeout=60).json()
    assert answer["cache_hit"] is True
    cone.assert_masks_match(png_mask(answer["mask_image_base64"]), cone.reference_logits([(700.0, 100.0)], SIZE_HW)[0])

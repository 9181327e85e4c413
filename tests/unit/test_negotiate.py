"""Content negotiation (``serving.responses.negotiate``) without a server."""

from __future__ import annotations

import pytest

from serving.errors import NotAcceptable, http_status
from serving.responses import JSON, PNG, ZIP, negotiate


@pytest.mark.parametrize(("accept", "default", "chosen"), [
    (None, JSON, JSON),
    ("", ZIP, ZIP),
    ("   ", JSON, JSON),
    ("application/json", ZIP, JSON),
    ("APPLICATION/ZIP", JSON, ZIP),
    ("image/png", JSON, PNG),
    ("*/*", ZIP, ZIP),
    ("*", JSON, JSON),
    ("application/*", ZIP, ZIP),
    ("application/*", JSON, JSON),
    ("image/*", JSON, PNG),
    ("text/html, image/png", JSON, PNG),  # the first range we can answer
    ("application/zip;q=0.5, image/png;q=0.9", JSON, PNG),  # the highest q wins, not the first
    ("image/png;q=0.9, application/zip;q=0.9", JSON, PNG),  # equal q: the order of the header
    ("image/png;q=0, application/zip", JSON, ZIP),  # q=0 means "not this"
    ("image/png;q=bad, application/zip;q=0.1", JSON, ZIP),  # an unreadable q counts as 0
    ("text/plain;q=1, */*;q=0.1", ZIP, ZIP),
    (" image/png ; q=0.8 ,application/json;q=0.7", ZIP, PNG),
])
def test_accept_picks_the_best_answerable_type(accept: str | None, default: str, chosen: str) -> None:
    assert negotiate(accept, default) == chosen


@pytest.mark.parametrize("accept", ["text/html", "image/jpeg, text/*", "application/json;q=0", ",,,", "*/*;q=0"])
def test_nothing_answerable_is_406_naming_the_header(accept: str) -> None:
    with pytest.raises(NotAcceptable, match="cannot answer Accept") as caught:
        negotiate(accept, JSON)
    assert http_status(caught.value) == 406

"""What every endpoint's OpenAPI description shares: the error body, error responses, upload bodies, the locale
parameter, and the URLs pictures are served at."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from fastapi import Query
from pydantic import BaseModel, Field

__all__ = ["LOCALE", "RANK", "ErrorResponse", "Rank", "error_responses", "image_url", "multipart_body", "with_urls"]

LOCALE = Query(None, max_length=16, description="Language of the common names: one of `/api/info`'s `locales` "
               "(de, fr, ...; default: the server's). A species without a name in it gets its English name, else its "
               "scientific name; an unknown locale is 422, listing the available ones.")
RANK = Query("species", description="The rank answered at: species, genus, family or order (the scores of each taxon's "
             "species combined: summed softmax probability, noisy-OR of confidences, best similarity), or auto: per "
             "window the lowest rank whose best taxon reaches `min_conf`. A taxon's pictures are its species'.")
Rank = Literal["species", "genus", "family", "order", "auto"]


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong, in words for a person.")


def multipart_body(description: str) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of an upload (the body is parsed by :func:`receive_upload`, not by FastAPI)."""
    schema = {"type": "object", "required": ["file"],
              "properties": {"file": {"type": "string", "format": "binary", "description": description}}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error status codes."""
    text = {
        400: "Malformed upload.", 404: "Not found.", 408: "The upload stalled for longer than `body_timeout_s`.",
        413: "The upload, its audio or its windows pass one of the server's limits (see `/api/info`); the message "
             "names the limit and what the request needed.",
        415: "Not a multipart/form-data upload.",
        422: "Bad parameters (e.g. a window longer than the model's, a hop under `min_hop_s`), or a file that is "
             "not readable audio.",
        503: "Too many requests are waiting; try again shortly.",
    }
    return {code: {"model": ErrorResponse, "description": text[code]} for code in codes}


def image_url(image_id: str) -> str:
    """Where the gallery picture ``image_id`` is served."""
    return "/api/images/" + quote(str(image_id), safe="")


def with_urls(images: list[dict]) -> list[dict]:
    """Each picture (of a JSON view without paths) with the ``url`` it is served at."""
    return [{**image, "url": image_url(image["id"])} for image in images]

"""One rule per idea: unit vectors, skipped inputs, input-file checks and table cells, shared by every layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import birdbridge.embed
import birdbridge.embed.table
from birdbridge.embed.table import EmbeddingTable
from birdbridge.errors import AudioError, BirdbridgeError, Failure, InputError
from birdbridge.evaluate.metrics import retrieval_metrics
from birdbridge.gallery.store import Gallery
from birdbridge.species import PromptSpec, class_embeddings, taxonomy_from_names
from birdbridge.utils.input_files import check_input_file, looks_like_text, read_head
from birdbridge.utils.text import optional_text
from birdbridge.utils.vectors import l2_normalize

ZERO_RULE = "all-zero or non-finite and have no direction"


def test_l2_normalize_makes_unit_rows_in_the_asked_dtype() -> None:
    x = np.array([[3.0, 4.0], [0.0, -2.0]])
    out = l2_normalize(x)
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, -1.0]])
    assert l2_normalize(x, dtype=np.float64).dtype == np.float64
    assert np.allclose(l2_normalize([3.0, 4.0]), [0.6, 0.8])
    assert l2_normalize(np.zeros((0, 4))).shape == (0, 4)


@pytest.mark.parametrize("bad", [0.0, np.nan, np.inf, 1e-13])
def test_a_row_without_direction_is_an_error_naming_it(bad) -> None:
    x = np.ones((4, 3))
    x[2] = bad
    with pytest.raises(BirdbridgeError, match=rf"image embeddings: 1 row\(s\) are {ZERO_RULE} \('c'\)"):
        l2_normalize(x, names=["a", "b", "c", "d"], what="image embeddings")
    x[[0, 1, 3]] = 0.0
    with pytest.raises(BirdbridgeError, match=r"4 row\(s\).*\(row 0, row 1, row 2, row 3\)"):
        l2_normalize(x)


def test_every_normalising_caller_follows_the_one_rule(tmp_path) -> None:
    """The gallery, the metrics, class embeddings and pooled tables refuse a zero vector the same way
    (the pooled table used to return it as it was)."""
    gallery = Gallery.create(tmp_path / "g", {"name": "t", "fingerprint": "f", "embed_dim": 4}, 4)
    calls = [
        lambda: gallery.append(np.zeros((1, 4)), [{"id": "z", "species": "Pica hudsonia"}]),
        lambda: retrieval_metrics(np.zeros((2, 4)), [0, 1], np.eye(4)[:2], [0, 1]),
        lambda: class_embeddings(taxonomy_from_names(["Pica hudsonia"]), PromptSpec(("scientific",), "single"),
                                 lambda texts: torch.zeros(len(texts), 4)),
        lambda: EmbeddingTable(np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32), ["a.wav", "a.wav"]).pooled(),
    ]
    for call in calls:
        with pytest.raises(BirdbridgeError, match=ZERO_RULE):
            call()


def test_one_failure_type_with_the_results_json_shape() -> None:
    assert birdbridge.embed.Failure is birdbridge.embed.table.Failure is Failure
    assert Failure("a.wav", "a.wav: empty").as_json() == {"input": "a.wav", "error": "a.wav: empty"}


def test_input_file_checks(tmp_path) -> None:
    with pytest.raises(AudioError, match=r"nope.wav: file not found"):
        check_input_file(tmp_path / "nope.wav", AudioError)
    with pytest.raises(InputError, match=r"is a folder, not a video file \(give the videos\)"):
        check_input_file(tmp_path, kind="a video file", folder_hint="give the videos")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"is empty \(0 bytes\) \(the video was probably not saved"):
        check_input_file(empty, noun="video")
    text = tmp_path / "notes.wav"
    text.write_text("a note\n")
    assert check_input_file(text) == text and looks_like_text(read_head(text))
    assert not looks_like_text(b"\x00\x01RIFF") and not looks_like_text(b"")
    assert read_head(tmp_path / "nope") == b""


@pytest.mark.parametrize(("value", "text"), [(None, None), (math.nan, None), ("  ", None), (" a ", "a"), (3, "3")])
def test_optional_text(value, text) -> None:
    assert optional_text(value) == text

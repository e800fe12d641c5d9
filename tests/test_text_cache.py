"""On-disk cache of species text embeddings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birdbridge.errors import BirdbridgeError
from birdbridge.species import PromptSpec, TextForm, class_embeddings, species_prompts
from birdbridge.species.taxonomy import Species, Taxonomy
from birdbridge.species.text_cache import (
    TextEncoder,
    cache_dir,
    clear_cache,
    species_text_embeddings,
    variant_text_embeddings,
)


class FakeEncoder:
    """A TextEncoder: hash-seeded bag-of-words embeddings; counts encode_texts calls."""

    def __init__(self, fingerprint: str = "fake-model-v1", dim: int = 12) -> None:
        self.fingerprint = fingerprint
        self.dim = dim
        self.calls = 0
        self.texts = 0

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        self.texts += len(texts)
        rows = []
        for text in texts:
            total = torch.zeros(self.dim)
            for token in text.lower().split():
                seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little") % (2**63)
                total += torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            rows.append(total)
        return F.normalize(torch.stack(rows), dim=-1)


def make_taxonomy() -> Taxonomy:
    return Taxonomy(
        [
            Species(
                "Animalia",
                "Chordata",
                "Aves",
                "Passeriformes",
                "Corvidae",
                "Pica",
                "hudsonia",
                "black-billed magpie",
            ),
            Species.from_names("Turdus migratorius", "American Robin"),
            Species.from_names("Cyanocitta cristata", "Blue Jay"),
        ]
    )


SPEC = PromptSpec(forms=(TextForm.TAXONOMIC_COMMON, TextForm.COMMON), templates="openai")


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.npy"))


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BIRDBRIDGE_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "text_embeddings"
    monkeypatch.delenv("BIRDBRIDGE_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "birdbridge" / "text_embeddings"


def test_real_teacher_is_cached_per_model(tiny_clip, tmp_path, monkeypatch):
    """With the tiny BioCLIP-layout teacher: the cached class embeddings are its own prompt embeddings averaged
    as pybioclip does; a repeat call reads the cache without running the text tower; a teacher with other
    weights (another fingerprint) gets its own entry and its own embeddings, never the first one's."""
    from birdbridge.models.loader import load_teacher
    from birdbridge.models.standins import build_small_clip

    teacher, other = load_teacher(tiny_clip), load_teacher(build_small_clip(tmp_path / "other-clip", seed=1))
    assert isinstance(teacher, TextEncoder) and teacher.fingerprint != other.fingerprint
    tax, cache = make_taxonomy(), tmp_path / "cache"
    spec = PromptSpec(forms=("taxonomic_common", "common"), templates="single")

    def reference(model) -> np.ndarray:  # per species: the model's prompt embeddings, mean, renormalised
        return np.stack([F.normalize(model.encode_texts(species_prompts(sp, spec)).double().mean(0), dim=0).numpy()
                         for sp in tax])

    first = species_text_embeddings(teacher, tax, spec, cache=cache)
    np.testing.assert_allclose(first, reference(teacher), atol=1e-6)
    [npy] = entries(cache)
    assert json.loads(npy.with_suffix(".json").read_text())["model_fingerprint"] == teacher.fingerprint

    def no_encoding(texts):
        raise AssertionError("the text tower ran although the cache holds these embeddings")

    monkeypatch.setattr(teacher, "encode_texts", no_encoding)
    np.testing.assert_array_equal(species_text_embeddings(teacher, tax, spec, cache=cache), first)
    second = species_text_embeddings(other, tax, spec, cache=cache)
    np.testing.assert_allclose(second, reference(other), atol=1e-6)
    assert len(entries(cache)) == 2 and not np.allclose(second, first, atol=1e-3)


def test_second_call_hits_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BIRDBRIDGE_CACHE", str(tmp_path))
    tax, encoder = make_taxonomy(), FakeEncoder()
    first = species_text_embeddings(encoder, tax, SPEC)
    assert encoder.calls >= 1 and encoder.texts == 3 * 160
    np.testing.assert_allclose(first, class_embeddings(tax, SPEC, FakeEncoder().encode_texts), atol=1e-6)

    calls = encoder.calls
    again = species_text_embeddings(encoder, tax, SPEC)
    assert encoder.calls == calls
    np.testing.assert_array_equal(again, first)
    assert again.dtype == np.float32 and again.shape == (3, 12)

    [npy] = entries(tmp_path / "text_embeddings")
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["species"] == list(tax.keys)
    assert meta["forms"] == ["taxonomic_common", "common"]
    assert len(meta["templates"]) == 80 and meta["model_fingerprint"] == "fake-model-v1"
    assert meta["shape"] == [3, 12] and meta["created"] and meta["kind"] == "species"
    assert meta["key"] == npy.stem and len(npy.stem) == 64
    assert not list((tmp_path / "text_embeddings").glob("*.tmp"))


@pytest.mark.parametrize(
    "change",
    ["model", "species", "order", "common_name", "forms", "form_order", "templates", "template_text"],
)
def test_any_change_misses(tmp_path, change):
    tax, spec, encoder = make_taxonomy(), SPEC, FakeEncoder()
    species_text_embeddings(encoder, tax, spec, cache=tmp_path)
    species = list(tax)
    if change == "model":
        encoder = FakeEncoder(fingerprint="fake-model-v2")
    elif change == "species":
        tax = Taxonomy(species[:2])
    elif change == "order":
        tax = Taxonomy([species[1], species[0], species[2]])
    elif change == "common_name":
        tax = Taxonomy([*species[:2], Species.from_names("Cyanocitta cristata", "Blue Jay (eastern)")])
    elif change == "forms":
        spec = PromptSpec(forms=(TextForm.TAXONOMIC_COMMON,), templates="openai")
    elif change == "form_order":
        spec = PromptSpec(forms=(TextForm.COMMON, TextForm.TAXONOMIC_COMMON), templates="openai")
    elif change == "templates":
        spec = PromptSpec(forms=SPEC.forms, templates="single")
    else:
        spec = PromptSpec(
            forms=SPEC.forms, templates=[*SPEC.resolved_templates()[:-1], "a tattoo of that {}."]
        )
    encoder.calls = 0
    out = species_text_embeddings(encoder, tax, spec, cache=tmp_path)
    assert encoder.calls >= 1
    assert out.shape[0] == len(tax)
    assert len(entries(tmp_path)) == 2


def test_same_texts_share_entry(tmp_path):
    encoder = FakeEncoder()
    species_text_embeddings(
        encoder, make_taxonomy(), PromptSpec(forms=("common",), templates="single"), cache=tmp_path
    )
    encoder.calls = 0
    explicit = PromptSpec(forms=("common",), templates=["a photo of {}."])
    species_text_embeddings(encoder, make_taxonomy(), explicit, cache=tmp_path)
    assert encoder.calls == 0


@pytest.mark.parametrize(
    "damage", ["garbage_npy", "truncated_npy", "wrong_shape", "not_unit", "bad_json", "no_npy"]
)
def test_damaged_cache_is_recomputed(tmp_path, damage):
    tax, encoder = make_taxonomy(), FakeEncoder()
    good = species_text_embeddings(encoder, tax, SPEC, cache=tmp_path)
    [npy] = entries(tmp_path)
    if damage == "garbage_npy":
        npy.write_bytes(b"not a numpy file")
    elif damage == "truncated_npy":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "wrong_shape":
        np.save(npy, good[:2])
    elif damage == "not_unit":
        np.save(npy, good * 2)
    elif damage == "bad_json":
        npy.with_suffix(".json").write_text("{ truncated")
    else:
        npy.unlink()
    encoder.calls = 0
    out = species_text_embeddings(encoder, tax, SPEC, cache=tmp_path)
    assert encoder.calls >= 1
    np.testing.assert_array_equal(out, good)
    encoder.calls = 0  # the rewritten entry is trusted again
    np.testing.assert_array_equal(species_text_embeddings(encoder, tax, SPEC, cache=tmp_path), good)
    assert encoder.calls == 0


def test_cache_false_and_explicit_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BIRDBRIDGE_CACHE", str(tmp_path / "env"))
    encoder = FakeEncoder()
    species_text_embeddings(encoder, make_taxonomy(), SPEC, cache=False)
    assert not (tmp_path / "env").exists()
    species_text_embeddings(encoder, make_taxonomy(), SPEC, cache=tmp_path / "mine")
    assert len(entries(tmp_path / "mine")) == 1 and not (tmp_path / "env").exists()


def test_encoder_without_fingerprint():
    encoder = FakeEncoder(fingerprint="")
    with pytest.raises(BirdbridgeError, match="no fingerprint"):
        species_text_embeddings(encoder, make_taxonomy(), SPEC)
    assert species_text_embeddings(encoder, make_taxonomy(), SPEC, cache=False).shape == (3, 12)


def test_variant_embeddings(tmp_path):
    tax, encoder = make_taxonomy(), FakeEncoder()
    forms, templates = ("common", "scientific"), ["a {}.", "the {}!", "{}"]
    out = variant_text_embeddings(encoder, tax, forms, templates, cache=tmp_path)
    assert out.shape == (3, 6, 12) and out.dtype == np.float32
    spec = PromptSpec(forms=forms, templates=tuple(templates))
    for s, species in enumerate(tax):
        direct = FakeEncoder().encode_texts(species_prompts(species, spec)).numpy()
        np.testing.assert_allclose(out[s], direct, atol=1e-6)
    encoder.calls = 0
    np.testing.assert_array_equal(
        variant_text_embeddings(encoder, tax, forms, templates, cache=tmp_path), out
    )
    assert encoder.calls == 0
    # the class-mean entry for the same prompts is a separate entry
    species_text_embeddings(encoder, tax, spec, cache=tmp_path)
    assert encoder.calls >= 1 and len(entries(tmp_path)) == 2


def test_clear_cache(tmp_path):
    species_text_embeddings(FakeEncoder(), make_taxonomy(), SPEC, cache=tmp_path)
    (tmp_path / "notes.txt").write_text("keep me")
    assert clear_cache(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert clear_cache(tmp_path / "missing") == 0

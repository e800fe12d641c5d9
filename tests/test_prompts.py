"""Text forms, templates, prompt specs, averaged class embeddings and the prompt sampler."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species import (
    OPENAI_TEMPLATES,
    TEMPLATE_SETS,
    PromptSampler,
    PromptSpec,
    Species,
    Taxonomy,
    TextForm,
    class_embeddings,
    parse_forms,
    parse_text_form,
    prompt_embeddings,
    resolve_templates,
    species_prompts,
    taxonomy_from_names,
    text_for,
)

MAGPIE = Species(
    "Animalia",
    "Chordata",
    "Aves",
    "Passeriformes",
    "Corvidae",
    "Pica",
    "hudsonia",
    "black-billed magpie",
    "bkbmag1",
)
FULL_TAXONOMIC = "Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia"


class CountingEncode:
    """Deterministic bag-of-words embedding (hash-seeded token vectors, summed), counting its calls."""

    def __init__(self, dim: int = 16, as_numpy: bool = False) -> None:
        self.dim, self.as_numpy = dim, as_numpy
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> torch.Tensor:
        total = torch.zeros(self.dim, dtype=torch.float64)
        for token in text.lower().split():
            seed = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "little") % (2**63)
            total += torch.randn(self.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return total

    def __call__(self, texts: list[str]) -> torch.Tensor | np.ndarray:
        self.calls.append(list(texts))
        out = F.normalize(torch.stack([self.vector(t) for t in texts]), dim=-1).float()
        return out.numpy() if self.as_numpy else out


def small_taxonomy() -> Taxonomy:
    return Taxonomy(
        [
            MAGPIE,
            Species(
                "Animalia",
                "Chordata",
                "Aves",
                "Passeriformes",
                "Turdidae",
                "Turdus",
                "migratorius",
                "American Robin",
            ),
            Species("", "", "Aves", "", "Corvidae", "Cyanocitta", "cristata"),
            Species.from_names("Corvus corax", "Common Raven"),
            Species.from_names("Anas platyrhynchos"),
        ]
    )


# ------------------------------------------------------------------------------------------ text forms


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        (TextForm.TAXONOMIC, FULL_TAXONOMIC),
        (TextForm.TAXONOMIC_COMMON, FULL_TAXONOMIC + " with common name black-billed magpie"),
        (TextForm.SCIENTIFIC, "Pica hudsonia"),
        (TextForm.COMMON, "black-billed magpie"),
        (TextForm.SCIENTIFIC_COMMON, "Pica hudsonia with common name black-billed magpie"),
    ],
)
def test_text_forms_match_bioclip(form, expected):
    assert text_for(MAGPIE, form) == expected
    assert text_for(MAGPIE, form.value) == expected


def test_fallbacks_without_common_name_or_ranks():
    bare = Species("", "", "Aves", "", "Corvidae", "Cyanocitta", "cristata")
    assert text_for(bare, "common") == "Cyanocitta cristata"
    assert text_for(bare, "scientific_common") == "Cyanocitta cristata"
    assert text_for(bare, "taxonomic") == "Aves Corvidae Cyanocitta cristata"
    assert text_for(bare, "taxonomic_common") == "Aves Corvidae Cyanocitta cristata"
    assert text_for(Species.from_names("Corvus corax", "Common Raven"), "taxonomic_common") == (
        "Corvus corax with common name Common Raven"
    )


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("taxonomic", TextForm.TAXONOMIC),
        ("Taxonomic", TextForm.TAXONOMIC),
        ("taxonomic+common", TextForm.TAXONOMIC_COMMON),
        ("taxonomic + common", TextForm.TAXONOMIC_COMMON),
        ("taxonomic_common", TextForm.TAXONOMIC_COMMON),
        ("scientific_common", TextForm.SCIENTIFIC_COMMON),
        ("Scientific + Common", TextForm.SCIENTIFIC_COMMON),
        (" scientific ", TextForm.SCIENTIFIC),
        ("COMMON", TextForm.COMMON),
        (TextForm.COMMON, TextForm.COMMON),
    ],
)
def test_parse_text_form(text, form):
    assert parse_text_form(text) is form


@pytest.mark.parametrize(
    "bad",
    [
        "", "latin+latin", "genus", "scientific,common", "taxonomic+scientific", "common x", "common+common",
        # synonyms no longer accepted: only the five names (and '+' for '_')
        "sci", "tax+com", "scientific name", "common-name", "Scientific and common name", "vernacular",
    ],
)
def test_parse_text_form_errors_list_valid_names(bad):
    with pytest.raises(InputError) as info:
        parse_text_form(bad, source="--forms")
    message = str(info.value)
    assert message.startswith("--forms: unknown text form")
    for name in ("taxonomic", "taxonomic_common", "scientific", "common", "scientific_common"):
        assert name in message


def test_parse_forms():
    assert parse_forms("scientific, taxonomic+common") == (TextForm.SCIENTIFIC, TextForm.TAXONOMIC_COMMON)
    assert parse_forms(["common"]) == (TextForm.COMMON,)
    assert parse_forms(TextForm.COMMON) == (TextForm.COMMON,)
    with pytest.raises(InputError, match="twice"):
        parse_forms("taxonomic_common,taxonomic+common")
    with pytest.raises(InputError, match="no text form"):
        parse_forms([])
    assert str(TextForm.SCIENTIFIC) == "scientific" and f"{TextForm.COMMON}" == "common"


# ------------------------------------------------------------------------------------------- templates


def test_openai_templates():
    assert len(OPENAI_TEMPLATES) == 80
    assert len(set(OPENAI_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in OPENAI_TEMPLATES)
    assert OPENAI_TEMPLATES[0] == "a bad photo of a {}." and OPENAI_TEMPLATES[-1] == "a tattoo of the {}."
    assert OPENAI_TEMPLATES[39] == "a photo of a {}."
    assert TEMPLATE_SETS["openai"] == OPENAI_TEMPLATES
    assert TEMPLATE_SETS["single"] == ("a photo of {}.",) and TEMPLATE_SETS["none"] == ("{}",)


def _open_clip_templates() -> list[str] | None:
    """open_clip's OPENAI_IMAGENET_TEMPLATES read from its source (without importing the package)."""
    try:
        dist = importlib.metadata.distribution("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    source = Path(str(dist.locate_file("open_clip/zero_shot_metadata.py")))
    if not source.exists():
        return None
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "OPENAI_IMAGENET_TEMPLATES":
            texts = []
            for lam in node.value.elts:
                parts = lam.body.values
                texts.append("".join(p.value if isinstance(p, ast.Constant) else "{}" for p in parts))
            return texts
    return None


def test_openai_templates_match_open_clip():
    reference = _open_clip_templates()
    if reference is None:
        pytest.skip("open_clip source not installed")
    assert list(OPENAI_TEMPLATES) == reference


def test_resolve_templates():
    assert resolve_templates("OpenAI") == OPENAI_TEMPLATES
    assert resolve_templates("a recording of {}.") == ("a recording of {}.",)
    assert resolve_templates(["a {}", "the {} {x}"]) == ("a {}", "the {} {x}")
    for bad, needle in [
        ("imagenet", "unknown template set"),
        ([], "no templates"),
        (["a photo of a bird."], "template 1"),
        (["a {}", "{} and {}"], "template 2"),
        (["a {}", "a {}"], "twice"),
    ]:
        with pytest.raises(InputError, match=needle):
            resolve_templates(bad)


# ------------------------------------------------------------------------------------------ PromptSpec


def test_prompt_spec():
    spec = PromptSpec(forms=("scientific", "taxonomic+common"), templates="single")
    assert spec.forms == (TextForm.SCIENTIFIC, TextForm.TAXONOMIC_COMMON)
    assert spec.resolved_templates() == ("a photo of {}.",)
    assert spec.templates == "single"  # a set name is kept as the name
    custom = PromptSpec(forms=(TextForm.COMMON,), templates=["a {}", "the {}"])
    assert custom.templates == ("a {}", "the {}") and custom.n_variants == 2
    assert PromptSpec().templates == "openai" and PromptSpec().n_variants == 80
    with pytest.raises(InputError):
        PromptSpec(forms=("nonsense",))


def test_prompt_spec_fingerprint():
    base = PromptSpec(forms=(TextForm.SCIENTIFIC, TextForm.COMMON), templates="single")
    assert base.fingerprint == PromptSpec(forms=("scientific", "common"), templates=["a photo of {}."]).fingerprint
    others = [
        PromptSpec(forms=(TextForm.COMMON, TextForm.SCIENTIFIC), templates="single"),
        PromptSpec(forms=(TextForm.SCIENTIFIC,), templates="single"),
        PromptSpec(forms=(TextForm.SCIENTIFIC, TextForm.COMMON), templates="none"),
        PromptSpec(forms=(TextForm.SCIENTIFIC, TextForm.COMMON), templates=["a photo of {}!"]),
    ]
    assert len({base.fingerprint, *(o.fingerprint for o in others)}) == 5


def test_species_prompts_form_major():
    spec = PromptSpec(forms=("scientific", "common"), templates=["a {}.", "the {}!"])
    assert species_prompts(MAGPIE, spec) == [
        "a Pica hudsonia.",
        "the Pica hudsonia!",
        "a black-billed magpie.",
        "the black-billed magpie!",
    ]
    assert len(species_prompts(MAGPIE, PromptSpec())) == 80


# ------------------------------------------------------------------------------------------ embeddings


def reference_class_embeddings(taxonomy: Taxonomy, spec: PromptSpec, encode: CountingEncode) -> np.ndarray:
    """Independent per-species computation, as pybioclip: encode, normalise, mean, renormalise."""
    rows = []
    for species in taxonomy:
        feats = torch.as_tensor(encode(species_prompts(species, spec)))
        feats = F.normalize(feats, dim=-1).mean(dim=0)
        rows.append(feats / feats.norm())
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("as_numpy", [False, True])
def test_class_embeddings_match_per_species_average(as_numpy):
    tax = small_taxonomy()
    spec = PromptSpec(forms=("taxonomic", "scientific_common", "common"), templates="openai")
    encode = CountingEncode(as_numpy=as_numpy)
    emb = class_embeddings(tax, spec, encode, batch_size=512)
    assert emb.dtype == np.float32 and emb.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    n_texts = len(tax) * spec.n_variants
    assert len(encode.calls) == math.ceil(n_texts / 512)  # batched across species, not once per species
    expected = reference_class_embeddings(tax, spec, CountingEncode())
    np.testing.assert_allclose(emb, expected, atol=1e-6)


def test_class_embeddings_order_and_batch_size():
    tax = small_taxonomy()
    spec = PromptSpec(forms=("scientific",), templates=["a {}", "b {}", "c {}"])
    emb = class_embeddings(tax, spec, CountingEncode(), batch_size=4)
    reversed_tax = Taxonomy(list(reversed(list(tax))))
    emb_rev = class_embeddings(reversed_tax, spec, CountingEncode(), batch_size=7)
    np.testing.assert_allclose(emb_rev[::-1], emb, atol=1e-6)
    single = class_embeddings(tax, spec, CountingEncode(), batch_size=1)
    np.testing.assert_allclose(single, emb, atol=1e-6)


def test_class_embeddings_encode_repeated_texts_once():
    tax = taxonomy_from_names(["Pica hudsonia", "Turdus migratorius"])  # no common names
    spec = PromptSpec(forms=("scientific", "scientific_common"), templates="single")
    encode = CountingEncode()
    class_embeddings(tax, spec, encode, batch_size=64)
    assert encode.calls == [["a photo of Pica hudsonia.", "a photo of Turdus migratorius."]]


def test_class_embeddings_reject_bad_encoder_output():
    tax = small_taxonomy()
    spec = PromptSpec(forms=("scientific",), templates="single")
    with pytest.raises(BirdbridgeError, match="shape"):
        class_embeddings(tax, spec, lambda texts: torch.ones(len(texts) + 1, 4))
    with pytest.raises(BirdbridgeError, match="zero or non-finite"):
        class_embeddings(tax, spec, lambda texts: torch.zeros(len(texts), 4))


def test_prompt_embeddings_are_per_variant():
    tax = small_taxonomy()
    spec = PromptSpec(forms=("common", "taxonomic"), templates=["a {}", "b {}", "c {}"])
    encode = CountingEncode()
    emb = prompt_embeddings(tax, spec, encode, batch_size=5)
    assert emb.shape == (5, 6, 16) and emb.dtype == np.float32
    for s, species in enumerate(tax):
        direct = CountingEncode()(species_prompts(species, spec))
        np.testing.assert_allclose(emb[s], direct, atol=1e-6)
    mean = emb.astype(np.float64).mean(axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(mean, class_embeddings(tax, spec, CountingEncode()), atol=1e-6)


# --------------------------------------------------------------------------------------- PromptSampler

MIX = {"common": 0.3, "scientific": 0.3, "taxonomic": 0.2, "taxonomic+common": 0.2}


def test_sampler_variants_and_indices():
    tax = small_taxonomy()
    sampler = PromptSampler(tax, MIX, templates="openai")
    assert sampler.forms == (
        TextForm.TAXONOMIC,
        TextForm.TAXONOMIC_COMMON,
        TextForm.SCIENTIFIC,
        TextForm.COMMON,
    )
    assert sampler.n_variants == 4 * 80
    variants = sampler.all_variants(0)
    assert len(variants) == sampler.n_variants
    assert variants == [sampler.text(0, v) for v in range(sampler.n_variants)]
    v = 3 * 80 + 39  # form 3 (common), template 39
    assert sampler.variant(v) == (TextForm.COMMON, 39)
    assert variants[v] == "a photo of a black-billed magpie."
    assert sampler.spec == PromptSpec(sampler.forms, sampler.templates)
    with pytest.raises(IndexError):
        sampler.variant(sampler.n_variants)
    assert pytest.approx(sampler.weights.sum()) == 1.0


def test_sampler_frequencies_follow_mix():
    tax = small_taxonomy()
    sampler = PromptSampler(
        tax, {"common": 3, "scientific": 3, "taxonomic": 2, "taxonomic_common": 2}, "openai"
    )
    n = 20_000
    drawn = sampler.sample_variant_indices(n, np.random.default_rng(1234))
    forms = [sampler.variant(int(v))[0] for v in drawn]
    templates = np.bincount(drawn % 80, minlength=80)
    expected = {"common": 0.3, "scientific": 0.3, "taxonomic": 0.2, "taxonomic_common": 0.2}
    for name, p in expected.items():
        observed = sum(f.value == name for f in forms) / n
        assert abs(observed - p) < 0.02, (name, observed)
    assert templates.min() > 0.5 * n / 80 and templates.max() < 1.5 * n / 80
    batch = sampler.sample_variant_indices(10_000, np.random.default_rng(0))
    assert batch.min() >= 0 and batch.max() < sampler.n_variants
    common_share = np.mean([sampler.variant(int(v))[0] is TextForm.COMMON for v in batch])
    assert abs(common_share - 0.3) < 0.03


def test_sampler_zero_weight_forms_are_excluded_and_seed_reproducible():
    tax = small_taxonomy()
    sampler = PromptSampler(tax, {"scientific": 1.0, "common": 0.0}, templates="single")
    assert sampler.forms == (TextForm.SCIENTIFIC,)
    a = [sampler.sample_variant_indices(5, np.random.default_rng(7)) for _ in range(3)]
    assert a[0].tolist() == a[1].tolist() == a[2].tolist() == [0] * 5
    assert sampler.text(2, 0) == "a photo of Cyanocitta cristata."
    rich = PromptSampler(tax, MIX, templates="openai")
    draws = [rich.sample_variant_indices(50, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0].tolist() == draws[1].tolist() and len(set(draws[0].tolist())) > 10


@pytest.mark.parametrize(
    ("mix", "needle"),
    [
        ({"common": -0.1, "scientific": 1}, "negative"),
        ({"latin+genus": 1}, "unknown text form"),
        ({"common": 0, "scientific": 0}, "sum to zero"),
        ({}, "sum to zero"),
        ({"common": float("nan")}, "finite"),
        ({"common": True}, "finite"),
        ({"scientific_common": 1, "scientific+common": 1}, "twice"),
    ],
)
def test_sampler_mix_validation(mix, needle):
    with pytest.raises(InputError, match=needle):
        PromptSampler(small_taxonomy(), mix)


def test_sampler_weights_are_normalised():
    sampler = PromptSampler(small_taxonomy(), {"common": 3, "scientific": 1}, templates="none")
    assert sampler.forms == (TextForm.SCIENTIFIC, TextForm.COMMON)
    assert sampler.weights.tolist() == [0.25, 0.75]
    sampler = PromptSampler(small_taxonomy(), {"taxonomic+common": 1}, templates="none")
    assert sampler.all_variants(3) == ["Corvus corax with common name Common Raven"]

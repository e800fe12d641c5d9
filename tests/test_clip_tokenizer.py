"""The bundled CLIP tokenizer gives open_clip's SimpleTokenizer ids exactly."""

from __future__ import annotations

import importlib.util
import json
import random
import time
from pathlib import Path

import pytest
import torch

from birdbridge.models.clip_tokenizer import (
    ASSETS_DIR,
    CONTEXT_LENGTH,
    EOT_ID,
    SOT_ID,
    ClipTokenizer,
    clean_text,
    load_clip_tokenizer,
)
from openclip_reference import OPEN_CLIP_DIR, simple_tokenizer

ROOT = Path(__file__).resolve().parents[1]

TEXTS = [
    "",
    "a photo of a bird",
    "Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia with common name black-billed magpie",
    "a photo of Turdus migratorius, the American Robin.",
    "Cardinalis cardinalis (Northern Cardinal) — male, singing!",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt; &amp;amp;amp;amp; &quot;quoted&quot; caf&eacute;",
    "Caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \u00dfstra\u00dfe İstanbul ΣΟΦΊΑ ǅ ﬁne",
    "e&#769; vs \u00e9 vs e\u0301",
    "mojibake: Ã©tÃ© â€™s",
    "日本語のテキスト 鳥 새 птица طائر पक्षी",
    "emoji 🐦🦜🐧 and ZWJ 👩‍🔬",
    "tabs\tand\nnewlines\r\n  and\u00a0nbsp\u3000ideographic space   ",
    "don't won't I'm we'll they'd you're we've IT'S 'ſ 'K",
    "numbers 12345 3.14159 1e-5 ½ ² Ⅻ",
    "<|startoftext|> and <|endoftext|> are plain text for open_clip",
    "a <end_of_text> b <START_OF_TEXT> c !<end_of_text> d<end_of_text><end_of_text>!",
    "pun!ctu@tion #$%^&*()_+-=[]{}|;':\",./<>?`~",
    " ".join(["passerine"] * 120),  # far beyond 77 tokens
    "x" * 500,
]


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return load_clip_tokenizer()


@pytest.fixture(scope="module")
def reference():
    return simple_tokenizer()


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    chars = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 '!?.,;:<>_-&#;()[]{}\"/\\|`~@$%^*+=")
    chars += ["é", "ß", "ñ", "Ω", "λ", "中", "😀", "\u0301", "\u200b", "\u00a0", "ﬁ", "²", "İ", "ſ", "\t", "\n"]
    words = ["<end_of_text>", "<start_of_text>", "<|endoftext|>", "bird", "'s", "&amp;", "&lt;", "Aves", " "]
    texts = []
    for _ in range(n):
        pool = chars + words if rng.random() < 0.5 else chars
        texts.append("".join(rng.choice(pool) for _ in range(rng.randint(0, 80))))
    return texts


def test_assets_match_open_clip_vocabulary(tokenizer: ClipTokenizer, reference) -> None:
    vocab = json.loads((ASSETS_DIR / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408 == tokenizer.vocab_size
    assert vocab["<|startoftext|>"] == SOT_ID == reference.sot_token_id
    assert vocab["<|endoftext|>"] == EOT_ID == reference.eot_token_id
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    assert {renamed.get(k, k): v for k, v in reference.encoder.items()} == vocab
    merges = (ASSETS_DIR / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0].startswith("#version")
    assert [tuple(m.split()) for m in merges[1:]] == sorted(reference.bpe_ranks, key=reference.bpe_ranks.get)


def test_assets_are_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_clip_tokenizer", ROOT / "scripts" / "make_clip_tokenizer.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.main(["--bpe", str(OPEN_CLIP_DIR / "bpe_simple_vocab_16e6.txt.gz"), "--out", str(tmp_path)])
    for name in ("vocab.json", "merges.txt"):
        assert (tmp_path / name).read_bytes() == (ASSETS_DIR / name).read_bytes(), name


def test_licence_notice_is_bundled() -> None:
    text = (ASSETS_DIR / "LICENSE.txt").read_text(encoding="utf-8")
    assert "MIT" in text and "OpenAI" in text


def test_ids_equal_open_clip(tokenizer: ClipTokenizer, reference) -> None:
    ours = tokenizer(TEXTS)
    ref = reference(TEXTS, context_length=77)
    assert ours.dtype == torch.long and ours.shape == (len(TEXTS), CONTEXT_LENGTH)
    for i, text in enumerate(TEXTS):
        assert ours[i].tolist() == ref[i].tolist(), text


def test_ids_equal_open_clip_on_random_text(tokenizer: ClipTokenizer, reference) -> None:
    texts = _random_texts(1500)
    ours, ref = tokenizer(texts), reference(texts, context_length=77)
    bad = [texts[i] for i in range(len(texts)) if not torch.equal(ours[i], ref[i])]
    assert not bad, bad[:5]


def test_truncation_keeps_eot_last(tokenizer: ClipTokenizer, reference) -> None:
    long_text = " ".join(f"species{i}" for i in range(200))
    ids = tokenizer([long_text, "short"])
    assert ids[0, 0] == SOT_ID and ids[0, -1] == EOT_ID and (ids[0] != 0).all()
    head = [SOT_ID, *tokenizer.encode("short"), EOT_ID]
    assert ids[1].tolist()[: len(head)] == head
    assert ids[1, len(head) :].eq(0).all()
    for length in (5, 16, 100):
        assert torch.equal(tokenizer([long_text], context_length=length), reference([long_text], length))


def test_clean_text_is_open_clip_lower(reference) -> None:
    import openclip_reference

    for text in TEXTS:
        assert clean_text(text) == openclip_reference.oc_tokenizer._clean_lower(text)


def test_single_string_and_decode(tokenizer: ClipTokenizer) -> None:
    ids = tokenizer("A Photo of  a BIRD")
    assert ids.shape == (1, 77)
    assert tokenizer.decode(ids[0]) == "a photo of a bird"
    assert tokenizer.encode("bird") == tokenizer.encode_batch(["bird"])[0]
    assert tokenizer([]).shape == (0, 77)


def test_loaded_once_per_process_and_fast() -> None:
    assert load_clip_tokenizer() is load_clip_tokenizer(ASSETS_DIR)
    start = time.perf_counter()
    fresh = ClipTokenizer.from_folder(ASSETS_DIR)
    elapsed = time.perf_counter() - start
    assert fresh.vocab_size == 49408
    assert elapsed < 2.0, f"tokenizer load took {elapsed:.2f} s"

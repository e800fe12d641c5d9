#!/usr/bin/env python
"""Regenerate ``src/birdbridge/models/assets/clip_bpe/{vocab.json,merges.txt}`` from CLIP's BPE file.

The source is ``bpe_simple_vocab_16e6.txt.gz`` as shipped in the open_clip_torch wheel (MIT licence,
vocabulary by OpenAI). The derivation follows open_clip's ``SimpleTokenizer`` exactly:

* merges: lines 1 .. 49152-256-2 of the file (line 0 is a version header);
* vocab: the 256 byte-level characters of ``bytes_to_unicode``, then the same with ``</w>``, then
  one entry per merge (the two halves joined), then ``<|startoftext|>`` and ``<|endoftext|>``:
  49,408 tokens in all. (open_clip names the two special tokens ``<start_of_text>`` and
  ``<end_of_text>``; the ids, 49406 and 49407, are the same.)

Usage::

    .venv/bin/python scripts/make_clip_tokenizer.py [--bpe PATH] [--out DIR]

Without ``--bpe`` the file is taken from the installed ``open_clip`` package (found without importing
it, since importing open_clip needs torchvision). The output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "birdbridge" / "models" / "assets" / "clip_bpe"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
VOCAB_SIZE = 49408


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def find_installed_bpe() -> Path:
    spec = importlib.util.find_spec("open_clip")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("open_clip is not installed; pass --bpe PATH to bpe_simple_vocab_16e6.txt.gz")
    for location in spec.submodule_search_locations:
        path = Path(location) / BPE_NAME
        if path.is_file():
            return path
    raise SystemExit(f"{BPE_NAME} not found in the installed open_clip package; pass --bpe PATH")


def build(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """The HF ``vocab`` (token -> id) and the merge lines, as open_clip builds them."""
    with gzip.open(bpe_path) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    pairs = [tuple(line.split()) for line in merges]
    if len(pairs) != N_MERGES or any(len(p) != 2 for p in pairs):
        raise SystemExit(f"{bpe_path}: unexpected content (want {N_MERGES} merge pairs)")
    tokens = list(bytes_to_unicode().values())
    tokens += [t + "</w>" for t in tokens]
    tokens += ["".join(p) for p in pairs]
    tokens += list(SPECIAL_TOKENS)
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"{bpe_path}: built {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, [" ".join(p) for p in pairs]


def write(vocab: dict[str, int], merges: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bpe", type=Path, default=None, help=f"path to {BPE_NAME}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    bpe_path = args.bpe or find_installed_bpe()
    vocab, merges = build(bpe_path)
    write(vocab, merges, args.out)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

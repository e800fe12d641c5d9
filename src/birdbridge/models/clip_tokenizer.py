"""CLIP's BPE tokenizer, bundled with birdbridge, giving the same ids as open_clip's ``SimpleTokenizer``.

The vocabulary (49,408 tokens) and merges live in ``assets/clip_bpe`` (derived from open_clip's
``bpe_simple_vocab_16e6.txt.gz`` by ``scripts/make_clip_tokenizer.py``). They are loaded into a
``transformers.CLIPTokenizer`` (backed by the Rust *tokenizers* library; ~0.1 s to load, cached per
process) whose text handling is changed to be open_clip's:

* cleaning is done here, in Python, exactly as open_clip does it (``ftfy.fix_text``, ``html.unescape``
  twice, strip, whitespace collapse, lower case), and the Rust normaliser (NFC + lower case), which
  would differ on some inputs, is switched off;
* words are split with open_clip's pattern (case-insensitive, without the HF special-token
  alternatives) and then mapped to byte-level characters without GPT-2's extra split;
* ``<start_of_text>`` / ``<end_of_text>`` written in a text become the special ids where open_clip's
  pattern would see them, and HF's ``<|startoftext|>`` / ``<|endoftext|>`` are plain text, as in
  open_clip.

A tokenised batch is ``[sot, tokens..., eot]`` truncated to the context length (77) with ``eot``
forced into the last place, and padded with 0, exactly like open_clip.
"""

from __future__ import annotations

import functools
import html
import os
import threading
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch

ASSETS_DIR = Path(__file__).resolve().parent / "assets" / "clip_bpe"
CONTEXT_LENGTH = 77
SOT_ID = 49406
EOT_ID = 49407
PAD_ID = 0

# open_clip's word pattern without its special-token alternatives (those are handled in Python).
_WORD_PATTERN = r"""(?i)'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_OPENCLIP_SPECIALS = {"<start_of_text>": SOT_ID, "<end_of_text>": EOT_ID}


def clean_text(text: str) -> str:
    """open_clip's default ("lower") cleaning: ftfy, HTML unescape twice, whitespace collapse, lower case."""
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """Turns texts into ``[N, context_length]`` CLIP token ids, as open_clip's tokenizer does."""

    def __init__(
        self,
        hf_tokenizer: object,
        context_length: int = CONTEXT_LENGTH,
        sot_id: int = SOT_ID,
        eot_id: int = EOT_ID,
        pad_id: int = PAD_ID,
    ) -> None:
        from tokenizers import Regex, pre_tokenizers

        self.hf_tokenizer = hf_tokenizer
        backend = hf_tokenizer.backend_tokenizer  # type: ignore[attr-defined]
        backend.normalizer = None
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_WORD_PATTERN), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        backend.encode_special_tokens = True  # "<|endoftext|>" typed in a text is plain text
        self._backend = backend
        self._lock = threading.Lock()  # the Rust tokenizer object is not safe to share across threads
        self.context_length = int(context_length)
        self.sot_id = int(sot_id)
        self.eot_id = int(eot_id)
        self.pad_id = int(pad_id)
        self.vocab_size = int(backend.get_vocab_size(with_added_tokens=True))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str] = ASSETS_DIR, context_length: int = CONTEXT_LENGTH):
        """Load ``vocab.json`` + ``merges.txt`` (or ``tokenizer.json``) from ``folder``."""
        from transformers import CLIPTokenizer

        from birdbridge.models.hf_quiet import quiet_transformers

        with quiet_transformers():
            hf = CLIPTokenizer.from_pretrained(str(folder))
        return cls(hf, context_length=context_length, sot_id=hf.bos_token_id, eot_id=hf.eos_token_id)

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without start/end tokens or truncation."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """BPE ids of each text, without start/end tokens or truncation."""
        plans = [_split_openclip_specials(clean_text(t)) for t in texts]
        pieces = [p for plan in plans for p in plan if isinstance(p, str)]
        with self._lock:
            encoded = iter(self._backend.encode_batch(pieces, add_special_tokens=False)) if pieces else iter(())
        out: list[list[int]] = []
        for plan in plans:
            ids: list[int] = []
            for part in plan:
                if isinstance(part, str):
                    ids.extend(next(encoded).ids)
                else:
                    ids.append(self.sot_id if part == SOT_ID else self.eot_id)
            out.append(ids)
        return out

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        """``[N, context_length]`` ids: ``sot``, tokens, ``eot`` (kept last when truncating), zero padding."""
        if isinstance(texts, str):
            texts = [texts]
        length = int(context_length or self.context_length)
        result = torch.full((len(texts), length), self.pad_id, dtype=torch.long)
        for i, ids in enumerate(self.encode_batch(texts)):
            tokens = [self.sot_id, *ids, self.eot_id]
            if len(tokens) > length:
                tokens = tokens[:length]
                tokens[-1] = self.eot_id
            result[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return result  # type: ignore[return-value]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of ``ids`` with start, end and padding tokens left out."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        keep = [int(i) for i in ids if int(i) not in (self.sot_id, self.eot_id)]
        while keep and keep[-1] == self.pad_id:
            keep.pop()
        with self._lock:
            return self.hf_tokenizer.decode(keep, skip_special_tokens=True)  # type: ignore[attr-defined]


def _split_openclip_specials(text: str) -> list[str | int]:
    """Split cleaned ``text`` at ``<start_of_text>`` / ``<end_of_text>`` where open_clip's pattern sees them.

    open_clip's regex tries the special tokens first, but only where a match can start: at the start,
    after whitespace, a letter, a digit, or another special token. After punctuation the greedy
    punctuation run swallows the ``<`` instead.
    """
    if "<start_of_text>" not in text and "<end_of_text>" not in text:
        return [text] if text else []
    parts: list[str | int] = []
    start = 0  # start of the pending plain-text piece
    i = text.find("<")
    last_special_end = -1
    while i != -1:
        name = next((s for s in _OPENCLIP_SPECIALS if text.startswith(s, i)), None)
        if name is not None and (i == 0 or i == last_special_end or _starts_match_after(text[i - 1])):
            if i > start:
                parts.append(text[start:i])
            parts.append(_OPENCLIP_SPECIALS[name])
            start = last_special_end = i + len(name)
            i = text.find("<", start)
        else:
            i = text.find("<", i + 1)
    if start < len(text):
        parts.append(text[start:])
    return parts


def _starts_match_after(char: str) -> bool:
    """Whether a regex match may start right after ``char`` (whitespace, letter or number before it)."""
    return char.isspace() or unicodedata.category(char)[0] in "LN"


@functools.lru_cache(maxsize=8)
def _load_cached(folder: str, context_length: int) -> ClipTokenizer:
    return ClipTokenizer.from_folder(folder, context_length=context_length)


def load_clip_tokenizer(
    folder: str | os.PathLike[str] | None = None, context_length: int = CONTEXT_LENGTH
) -> ClipTokenizer:
    """The CLIP tokenizer from ``folder`` (default: the bundled one), loaded once per process."""
    return _load_cached(str(Path(folder or ASSETS_DIR).resolve()), int(context_length))

"""The text side of a CLAP model (RoBERTa + projection), for BioLingual's own zero-shot and text queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from birdbridge.errors import ModelFormatError
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.models.student import clap_fingerprint
from birdbridge.utils.device import best_device


class ClapTextEncoder:
    """texts -> L2-normalised CLAP text embeddings, in the CLAP model's shared audio-text space."""

    def __init__(self, model, tokenizer, *, name: str, fingerprint: str, device: torch.device) -> None:
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.name = name
        self.fingerprint = fingerprint
        self.device = device
        self.max_length = min(int(getattr(tokenizer, "model_max_length", 512) or 512), 512)

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device | None = None, name: str | None = None):
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        folder = Path(folder)
        try:
            with quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(folder)
                model = ClapTextModelWithProjection.from_pretrained(folder)
        except Exception as exc:
            raise ModelFormatError(f"{folder}: could not load the CLAP text tower or its tokenizer ({exc})") from exc
        return cls(
            model, tokenizer, name=name or folder.name, fingerprint=clap_fingerprint(folder),
            device=best_device(device),
        )

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            embeds = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).text_embeds
            out.append(F.normalize(embeds.float(), dim=-1).cpu())
        if not out:
            return torch.empty(0, self.embed_dim)
        return torch.cat(out)

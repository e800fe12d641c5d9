"""Pretraining of the demo's stand-in models on the synthetic world, saved in the real hub layouts.

* The teacher, an image-text CLIP, learns pictures against species names (open_clip layout, like
  BioCLIP-2). Its text space therefore carries what the pictures show.
* The student, an audio-text CLAP with its own BPE tokenizer, learns calls against species names
  (transformers ClapModel layout, like BioLingual). Its text space is its own.

Both use the same species-level InfoNCE as distillation (``birdbridge.train.loss``), with every form of
every name as text, so neither model ever sees the other modality.

**Vocabulary** (``PretrainSettings.vocabulary``, the paper's open question of vocabulary mismatch): how much of
the species' names the text tower learns. BioLingual's audio knows many birds whose names its text side knows
poorly; the setting makes the stand-in student so.

* ``"all"`` (the default): every species' names, in every step of the names phase.
* a fraction in (0, 1], e.g. ``0.5`` (1 is ``"all"``): the names of only that share of the species
  (``round(fraction · S)``, at least one, drawn with the seed). In the names phase the other species' calls keep
  their learnable prototype from the warm-up as target, so the audio tower goes on telling them apart and the
  batch's contrast still pushes them away from the learned names, but the text tower never reads their names.
* ``"rare"``: every species' names are read, but on a long tail: in each step of the names phase a species'
  name is its target with probability ``rank ** -RARE_EXPONENT`` (ranks 1..S drawn with the seed: the most
  frequent species always, the rarest in about 1% of its steps), else its prototype.

The student's BPE tokenizer is trained on every name in every setting: real BioLingual's byte-level BPE
spells any name, and what it lacks is a text tower that learned to map them; a tokenizer that stays the same
also keeps the comparison about the text tower alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from birdbridge.audio import random_crop, read_audio
from birdbridge.demo.world import World
from birdbridge.embed.images import open_image
from birdbridge.errors import InputError
from birdbridge.models.clap_frontend import FrontendConfig, LogMelFrontend
from birdbridge.models.hf_quiet import quiet_transformers
from birdbridge.species import PromptSampler, TextForm
from birdbridge.train.loss import species_info_nce
from birdbridge.utils.progress import progress_bar

#: The demo student's front end: 2 s windows at 16 kHz, 32 mel bins every 20 ms (101 frames).
DEMO_FRONTEND = FrontendConfig(sample_rate=16_000, n_mels=32, n_fft=640, hop_length=320, fmin=50.0,
                               fmax=8_000.0, window_s=2.0)
NAME_FORMS = {"common": 1.0, "scientific": 1.0, "taxonomic": 1.0, "taxonomic_common": 1.0}
RARE_EXPONENT = 1.5  # "rare": the species of frequency rank r reads its name in r ** -1.5 of its steps
_VOCABULARY_STREAM = 0x564F43  # "VOC": the random stream that picks the learned or frequent species


@dataclass(frozen=True)
class PretrainSettings:
    warmup_epochs: int = 30  # species prototypes as targets: trains the encoder from scratch quickly
    epochs: int = 20  # then names through the text tower
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    vocabulary: str | float = "all"  # "all", a fraction of the species, or "rare" (see the module docstring)

    def __post_init__(self) -> None:
        check_vocabulary(self.vocabulary, "vocabulary")


def check_vocabulary(vocabulary: str | float, field: str) -> None:
    """Raise an InputError naming ``field`` unless ``vocabulary`` is "all", "rare" or a fraction in (0, 1]."""
    if vocabulary in ("all", "rare"):
        return
    try:
        fraction = float(vocabulary)
    except (TypeError, ValueError):
        fraction = math.nan
    if isinstance(vocabulary, bool) or not 0.0 < fraction <= 1.0:
        raise InputError(field, f"{vocabulary!r} is not a vocabulary of the stand-in student's text tower",
                         'give "all", "rare" or the share of the species whose names it learns, in (0, 1], e.g. 0.5')


def name_rates(vocabulary: str | float, n_species: int, seed: int = 0) -> np.ndarray:
    """Per species, the probability that a step of the names phase uses its name (else its prototype):
    all ones for ``"all"``, ones and zeros for a fraction, a long tail for ``"rare"``; see the module docstring."""
    check_vocabulary(vocabulary, "vocabulary")
    if vocabulary == "all":
        return np.ones(n_species)
    order = np.random.default_rng([seed, _VOCABULARY_STREAM]).permutation(n_species)
    if vocabulary == "rare":
        rates = np.empty(n_species)
        rates[order] = np.arange(1, n_species + 1, dtype=float) ** -RARE_EXPONENT
        return rates
    fraction = float(vocabulary)
    rates = np.zeros(n_species)
    rates[order[: max(1, round(fraction * n_species))]] = 1.0
    return rates


def _names(world: World) -> PromptSampler:
    return PromptSampler(world.taxonomy, NAME_FORMS, "single")


def _fit(
    embed_x: Callable[[torch.Tensor], torch.Tensor],
    embed_text: Callable[[list[str]], torch.Tensor],
    params: list[torch.nn.Parameter],
    data: torch.Tensor,
    labels: np.ndarray,
    texts: PromptSampler,
    settings: PretrainSettings,
    description: str,
    augment: Callable[[torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
    progress: bool | None = None,
) -> list[float]:
    """Species-level InfoNCE of ``embed_x(data[batch])``: first against learnable species prototypes
    (``warmup_epochs``, a cosine classifier: encoders from scratch learn far faster so), then against one
    sampled name per species through the text tower (``epochs``). In that phase a species reads its name with
    its :func:`name_rates` probability and keeps its prototype as target otherwise."""
    rates = name_rates(settings.vocabulary, len(texts.taxonomy), settings.seed)
    every_name = bool((rates == 1.0).all())
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    dim = int(embed_x(data[:2] if augment is None else augment(data[:2], np.random.default_rng(0))).shape[1])
    prototypes = torch.nn.Parameter(torch.randn(len(texts.taxonomy), dim) * 0.1)
    optimizer = torch.optim.AdamW([*params, log_scale, prototypes], lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, len(data) // settings.batch_size)
    total = (settings.warmup_epochs + settings.epochs) * steps_per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=total, pct_start=0.1)
    losses = []
    with progress_bar(description, total, progress) as bar:
        for epoch in range(settings.warmup_epochs + settings.epochs):
            order = rng.permutation(len(data))
            for b in range(steps_per_epoch):
                idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
                x = data[idx]
                if augment is not None:
                    x = augment(x, rng)
                species = torch.from_numpy(labels[idx])
                unique = torch.unique(species)
                if epoch < settings.warmup_epochs:
                    targets = prototypes[unique]
                else:
                    variants = texts.sample_variant_indices(len(unique), rng)
                    named = (np.ones(len(unique), bool) if every_name  # "all" draws nothing more: unchanged
                             else rng.random(len(unique)) < rates[unique.numpy()])
                    heard = [texts.text(int(s), int(v)) for s, v, n in zip(unique, variants, named, strict=True) if n]
                    if named.all():
                        targets = embed_text(heard)
                    else:  # the species that read no name this step keep their prototype as target
                        targets = prototypes[unique]
                        if heard:
                            targets = targets.index_copy(0, torch.from_numpy(np.flatnonzero(named)), embed_text(heard))
                loss = species_info_nce(embed_x(x), species, targets, unique, log_scale.clamp(max=math.log(100)).exp())
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                bar.advance()
    return losses


def pretrain_teacher(world: World, folder: Path, settings: PretrainSettings = PretrainSettings(),
                     progress: bool | None = None) -> tuple[Path, list[float]]:
    """A small CLIP trained on the world's training pictures and names, saved in open_clip's layout."""
    from transformers import CLIPModel

    from birdbridge.models.clip_tokenizer import load_clip_tokenizer
    from birdbridge.models.image_preprocess import ImagePreprocessor
    from birdbridge.models.openclip_convert import save_openclip_folder
    from birdbridge.models.standins import small_clip_config

    size = world.config.image_size
    torch.manual_seed(settings.seed)
    with quiet_transformers():
        model = CLIPModel(small_clip_config(embed_dim=64, image_size=size, patch_size=8, width=96, layers=3))
    preprocess = ImagePreprocessor(size=size)
    items = world.image_items("train")
    pixels = torch.stack([preprocess(open_image(world.path(it))) for it in items])
    labels = np.array([world.taxonomy.index(it.species) for it in items])
    tokenizer = load_clip_tokenizer()

    def embed_images(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(model.visual_projection(model.vision_model(pixel_values=x).pooler_output), dim=-1)

    def embed_texts(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts)
        ids = ids[:, : int((ids != 0).sum(dim=1).max())]
        return F.normalize(model.text_projection(model.text_model(input_ids=ids).pooler_output), dim=-1)

    def augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        flip = torch.from_numpy(rng.random(len(x)) < 0.5)
        return torch.where(flip[:, None, None, None], x.flip(-1), x)

    model.train()
    losses = _fit(embed_images, embed_texts, list(model.parameters()), pixels, labels, _names(world), settings,
                  "Pretraining the stand-in teacher (CLIP)", augment, progress)
    model.eval()
    return save_openclip_folder(model, folder), losses


def pretrain_student(world: World, folder: Path, settings: PretrainSettings = PretrainSettings(),
                     progress: bool | None = None) -> tuple[Path, list[float]]:
    """A small CLAP (own BPE tokenizer) trained on the world's training calls and names."""
    from transformers import ClapModel

    from birdbridge.models.standins import save_clap_folder, small_clap_config, train_roberta_tokenizer

    cfg = DEMO_FRONTEND
    sampler = _names(world)
    corpus = [t for s in range(len(world.taxonomy)) for t in sampler.all_variants(s)]
    tokenizer = train_roberta_tokenizer(corpus, folder, vocab_size=1000)
    torch.manual_seed(settings.seed)
    with quiet_transformers():
        model = ClapModel(small_clap_config(cfg, vocab_size=max(len(tokenizer), 8), width=64, projection_dim=64,
                                            depths=(2, 2)))
    frontend = LogMelFrontend(cfg)
    items = world.audio_items("train")
    clips = [read_audio(world.path(it), cfg.sample_rate) for it in items]
    labels = np.array([world.taxonomy.index(it.species) for it in items])
    index = torch.arange(len(clips))

    def crops(idx: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(np.stack([random_crop(clips[int(i)], cfg.window_samples, rng) for i in idx]))

    def embed_audio(waves: torch.Tensor) -> torch.Tensor:
        pooled = model.audio_model(input_features=frontend(waves)).pooler_output
        return F.normalize(model.audio_projection(pooled), dim=-1)

    def embed_texts(texts: list[str]) -> torch.Tensor:
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        out = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return F.normalize(model.text_projection(out.pooler_output), dim=-1)

    model.train()
    losses = _fit(embed_audio, embed_texts, list(model.parameters()), index, labels, sampler, settings,
                  "Pretraining the stand-in student (CLAP)", crops, progress)
    model.eval()
    return save_clap_folder(model, folder, cfg, tokenizer), losses


__all__ = ["DEMO_FRONTEND", "RARE_EXPONENT", "PretrainSettings", "TextForm", "check_vocabulary", "name_rates",
           "pretrain_student", "pretrain_teacher"]

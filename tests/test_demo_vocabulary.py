"""The stand-in student's text vocabulary (``PretrainSettings.vocabulary``): what the names phase reads, in a tiny
``_fit`` on Gaussian blobs with a recording text embedder (no model, no world: well under a second)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from birdbridge.demo.names import generate_taxonomy
from birdbridge.demo.pretrain import NAME_FORMS, RARE_EXPONENT, PretrainSettings, _fit, name_rates
from birdbridge.demo.run import DemoSettings
from birdbridge.errors import InputError
from birdbridge.species import PromptSampler

TAXONOMY = generate_taxonomy(1, seed=3)  # 8 species
SAMPLER = PromptSampler(TAXONOMY, NAME_FORMS, "single")
SPECIES_OF = {text: s for s in range(len(TAXONOMY)) for text in SAMPLER.all_variants(s)}


def tiny_fit(vocabulary: str | float, epochs: int = 3, seed: int = 0) -> tuple[list[float], list[list[int]]]:
    """``_fit`` of a linear encoder on 8 blobs; returns the losses and, per names step, the species whose names the
    text embedder was given (asserting each text is one of those species' names)."""
    gen = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(len(TAXONOMY)), 12)
    data = torch.randn(len(TAXONOMY), 16, generator=gen)[labels] + 0.3 * torch.randn(len(labels), 16, generator=gen)
    torch.manual_seed(seed)
    encoder = torch.nn.Linear(16, 8)
    table = torch.nn.Embedding(len(SPECIES_OF), 8)
    row = {text: i for i, text in enumerate(SPECIES_OF)}
    calls: list[list[int]] = []

    def embed_text(texts: list[str]) -> torch.Tensor:
        calls.append([SPECIES_OF[t] for t in texts])
        return F.normalize(table(torch.tensor([row[t] for t in texts])), dim=-1)

    settings = PretrainSettings(warmup_epochs=2, epochs=epochs, batch_size=16, seed=seed, vocabulary=vocabulary)
    losses = _fit(lambda x: F.normalize(encoder(x), dim=-1), embed_text,
                  [*encoder.parameters(), *table.parameters()], data, labels, SAMPLER, settings, "tiny", progress=False)
    return losses, calls


def test_all_reads_every_species_name_in_every_names_step() -> None:
    losses, calls = tiny_fit("all")
    steps_per_epoch = 96 // 16
    assert len(calls) == 3 * steps_per_epoch  # one text batch per names step, none in the warm-up
    assert all(len(c) == len(set(c)) and len(c) >= 6 for c in calls)  # one name of each species of the batch
    assert set().union(*calls) == set(range(len(TAXONOMY)))
    np.testing.assert_array_equal(name_rates("all", 8), np.ones(8))
    assert tiny_fit(1.0)[0] == losses  # a share of 1 is "all"


def test_a_share_never_reads_the_other_species_names() -> None:
    learned = np.flatnonzero(name_rates(0.5, len(TAXONOMY)))
    assert len(learned) == 4
    all_losses, _ = tiny_fit("all")
    losses, calls = tiny_fit(0.5)
    read = set().union(*calls)
    assert read == set(learned.tolist())  # the learned species' names, and no other
    warmup = 2 * (96 // 16)
    assert losses[:warmup] == all_losses[:warmup]  # the prototype warm-up is the same
    assert losses[warmup:] != all_losses[warmup:]
    # a different seed picks other species
    assert any(not np.array_equal(name_rates(0.5, 24, 0), name_rates(0.5, 24, s)) for s in (1, 2))


def test_rare_reads_every_name_on_a_long_tail() -> None:
    rates = name_rates("rare", len(TAXONOMY))
    np.testing.assert_allclose(np.sort(rates)[::-1], np.arange(1, 9) ** -RARE_EXPONENT)
    _, calls = tiny_fit("rare", epochs=12)
    counts = Counter(s for c in calls for s in c)
    frequent, rarest = int(np.argmax(rates)), int(np.argmin(rates))
    assert counts[frequent] > 5 * max(1, counts[rarest])
    assert counts[frequent] >= 0.5 * len(calls)  # rate 1: read whenever it is in the batch


@pytest.mark.parametrize("value", ["most", 0, 0.0, 1.5, -0.5, True, None])
def test_bad_vocabulary_names_the_field(value) -> None:
    with pytest.raises(InputError, match=r"^vocabulary: .*give \"all\", \"rare\""):
        PretrainSettings(vocabulary=value)
    with pytest.raises(InputError, match=r"^student_vocabulary: "):
        DemoSettings(student_vocabulary=value)
    assert DemoSettings(student_vocabulary="0.5").student_vocabulary == "0.5"

"""The InfoNCE loss against a direct loop computation, and its handling of repeated species."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from birdbridge.train.loss import Temperature, species_info_nce


def reference(audio, species, targets, target_species, scale, symmetric=True) -> float:
    """Loop form: audio->text cross-entropy over species; text->audio -log of the summed probability of
    each species' clips."""
    a = F.normalize(audio, dim=-1).double()
    t = F.normalize(targets, dim=-1).double()
    s = scale * a @ t.T
    a2t = []
    for i in range(len(a)):
        j = int((target_species == species[i]).nonzero())
        a2t.append(-(s[i, j] - torch.logsumexp(s[i], 0)))
    loss = sum(a2t) / len(a2t)
    if not symmetric:
        return float(loss)
    st = s.T
    t2a = []
    for u in range(len(t)):
        pos = (species == target_species[u]).nonzero().flatten()
        if len(pos) == 0:
            continue
        p = torch.softmax(st[u], 0)
        t2a.append(-torch.log(sum(p[i] for i in pos)))
    return float(0.5 * (loss + sum(t2a) / len(t2a)))


def test_matches_loop_reference_with_repeated_species() -> None:
    torch.manual_seed(0)
    audio = torch.randn(7, 12)
    species = torch.tensor([3, 1, 3, 3, 0, 1, 2])
    target_species = torch.tensor([0, 1, 2, 3, 4])  # 4 is a species with no clip in the batch
    targets = torch.randn(5, 12)
    for symmetric in (True, False):
        ours = species_info_nce(audio, species, targets, target_species, 14.0, symmetric)
        assert math.isclose(float(ours), reference(audio, species, targets, target_species, 14.0, symmetric),
                            rel_tol=1e-5)


def test_no_false_negatives() -> None:
    """Two clips of one species sitting on its target give a lower loss than with the clips swapped
    onto different targets: a duplicate in the batch is never pushed away as a negative."""
    t = torch.eye(3)
    species = torch.tensor([0, 0, 1, 2])
    on_target = torch.stack([t[0], t[0], t[1], t[2]])
    loss = species_info_nce(on_target, species, t, torch.arange(3), 20.0)
    assert float(loss) < 1e-3  # near zero: the duplicate of species 0 costs nothing
    # With per-sample targets (one row per clip, duplicates as negatives) the same embeddings pay log 2.
    per_sample = F.cross_entropy(20.0 * on_target @ on_target.T, torch.arange(4))
    assert float(per_sample) > 0.3


def test_temperature() -> None:
    fixed = Temperature(0.07, learnable=False)
    assert not any(p.requires_grad for p in fixed.parameters())
    assert math.isclose(fixed.temperature, 0.07, rel_tol=1e-6)
    learnable = Temperature(0.001, learnable=True)  # clamped to a scale of at most 100
    assert math.isclose(learnable().item(), 100.0, rel_tol=1e-6)
    assert [p.requires_grad for p in learnable.parameters()] == [True]

"""Training clips: random ``window``-long crops (``rand_trunc``), repeat-padded, deterministic by seed.

Every crop is drawn from ``numpy.random.default_rng([seed, epoch, index])`` and the order of an epoch
from ``default_rng([seed, epoch])``, so a run gives the same batches whatever the number of data
workers or processes, and a resumed run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from birdbridge.audio import AudioError, audio_info, read_audio, repeat_pad


@dataclass(frozen=True)
class Clip:
    path: Path
    species: int  # index into the taxonomy
    duration_s: float | None = None


class CropDataset(Dataset):
    """``(index, epoch)`` -> {"wave": float32 [window_samples], "species", "index" and "offset_s" of the clip
    used, "bad": [unreadable indices]}.

    A clip that cannot be read is replaced by the next readable one (so batch shapes stay equal across
    processes) and reported in ``bad``.
    """

    def __init__(self, clips: Sequence[Clip], sample_rate: int, window_samples: int, seed: int) -> None:
        self.clips = list(clips)
        self.sample_rate = sample_rate
        self.window_samples = window_samples
        self.seed = seed

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, epoch = key
        bad: list[int] = []
        for k in range(len(self.clips)):
            i = (index + k) % len(self.clips)
            try:
                wave, offset = self.crop(self.clips[i], np.random.default_rng([self.seed, epoch, i]))
            except AudioError:
                bad.append(i)
                continue
            return {"wave": torch.from_numpy(wave), "species": self.clips[i].species, "bad": bad, "index": i,
                    "offset_s": offset}
        raise AudioError("training data", "no clip could be read", "check the dataset's audio files")

    def crop(self, clip: Clip, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """A window-long crop of ``clip`` and where it starts (s); shorter clips are repeat-padded."""
        window_s = self.window_samples / self.sample_rate
        duration = clip.duration_s if clip.duration_s else audio_info(clip.path).duration_s
        offset = 0.0
        if duration > window_s:
            offset = float(rng.uniform(0.0, duration - window_s))
            x = read_audio(clip.path, self.sample_rate, offset_s=offset, duration_s=window_s)
        else:
            x = read_audio(clip.path, self.sample_rate)
        return repeat_pad(x[: self.window_samples], self.window_samples), offset


def collate(items: list[dict]) -> dict:
    return {
        "wave": torch.stack([it["wave"] for it in items]),
        "species": torch.tensor([it["species"] for it in items], dtype=torch.long),
        "bad": [i for it in items for i in it["bad"]],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "offset_s": torch.tensor([it["offset_s"] for it in items], dtype=torch.float64),
    }


class EpochBatches(Sampler):
    """Batches of ``(index, epoch)`` for one process: each global batch is split across ``world`` ranks.

    Global batch ``b`` of epoch ``e`` is ``perm_e[b*G:(b+1)*G]`` with ``perm_e`` seeded by ``(seed, e)``;
    rank ``r`` takes its ``r``-th slice. The incomplete last global batch is dropped. Iteration starts
    at ``(start_epoch, start_batch)`` and runs through ``epochs``.
    """

    def __init__(self, n: int, global_batch: int, *, seed: int, epochs: int, rank: int = 0, world: int = 1,
                 start_epoch: int = 0, start_batch: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} is not divisible by {world} processes")
        self.n, self.global_batch, self.seed, self.epochs = n, global_batch, seed, epochs
        self.rank, self.world = rank, world
        self.start_epoch, self.start_batch = start_epoch, start_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return max(0, (self.epochs - self.start_epoch) * self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_rank = self.global_batch // self.world
        for epoch in range(self.start_epoch, self.epochs):
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            first = self.start_batch if epoch == self.start_epoch else 0
            for b in range(first, self.batches_per_epoch):
                chunk = perm[b * self.global_batch : (b + 1) * self.global_batch]
                mine = chunk[self.rank * per_rank : (self.rank + 1) * per_rank]
                yield [(int(i), epoch) for i in mine]

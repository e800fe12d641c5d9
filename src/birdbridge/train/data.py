"""Training clips: random ``window``-long crops (``rand_trunc``), repeat-padded, deterministic by seed.

Every crop is drawn from ``numpy.random.default_rng([seed, epoch, index])`` and the order of an epoch
from ``default_rng([seed, epoch])``, so a run gives the same batches whatever the number of data
workers or processes, and a resumed run continues exactly where the interrupted one stopped.

Background (non-bird) clips follow the bird clips in the clip list. With them, each global batch holds a
fixed number of background crops, taken in turn from a per-epoch permutation of the background clips
(``default_rng([seed, epoch, 0xB6])``); each such draw has its own crop (``[seed, epoch, index, draw]``).

Each process decodes a recording once and cuts its crops from memory (:class:`DecodedClips`, up to
:data:`DECODED_BUDGET_BYTES`; recordings past that budget are read from disk for every crop, as before): the crops
are sample for sample those :func:`~birdbridge.audio.read_audio` gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from torch.utils.data import Dataset, Sampler

from birdbridge.audio import RESAMPLE_QUALITY, AudioError, AudioInfo, audio_info, read_audio, repeat_pad

DECODED_BUDGET_BYTES = 128 * 2**20
"""Decoded audio each training process (or data worker) keeps in memory: 128 MiB, about 35 minutes at 16 kHz."""


@dataclass(frozen=True)
class Clip:
    path: Path
    species: int  # index into the taxonomy; background classes follow the species (see train.targets)
    duration_s: float | None = None  # of the file
    start_s: float = 0.0  # a stretch of the file: start_s..end_s
    end_s: float | None = None  # None: the end of the file


class DecodedClips:
    """Recordings decoded once, at their own rate, while they fit ``budget_bytes``; :meth:`read` cuts a part from
    memory, exactly as :func:`~birdbridge.audio.read_audio` would read it from disk. Recordings that do not fit,
    or cannot be decoded whole, are read from disk each time (so their errors are :func:`read_audio`'s own)."""

    def __init__(self, budget_bytes: int = DECODED_BUDGET_BYTES) -> None:
        self.budget_bytes, self.used_bytes = budget_bytes, 0
        self._info: dict[Path, AudioInfo] = {}
        self._audio: dict[Path, np.ndarray | None] = {}  # None: read from disk

    def info(self, path: Path) -> AudioInfo:
        if path not in self._info:
            self._info[path] = audio_info(path)
        return self._info[path]

    def read(self, path: Path, sample_rate: int, offset_s: float, duration_s: float | None) -> np.ndarray:
        """``read_audio(path, sample_rate, offset_s=offset_s, duration_s=duration_s)``."""
        x = self._decoded(path)
        if x is not None:
            rate = self._info[path].sample_rate
            start = round(offset_s * rate)
            part = x[start:] if duration_s is None else x[start : start + max(1, round(duration_s * rate))]
            if rate != sample_rate and len(part):
                part = soxr.resample(part, rate, sample_rate, quality=RESAMPLE_QUALITY)
            if len(part):
                return np.ascontiguousarray(part, dtype=np.float32)
        return read_audio(path, sample_rate, offset_s=offset_s, duration_s=duration_s)  # past the end: its error

    def _decoded(self, path: Path) -> np.ndarray | None:
        if path not in self._audio:
            self._audio[path] = None
            try:
                if self.used_bytes + 4 * self.info(path).frames <= self.budget_bytes:
                    self._audio[path] = read_audio(path)
                    self.used_bytes += self._audio[path].nbytes
            except AudioError:
                pass  # read from disk for every crop: the error, if any, is the crop's
        return self._audio[path]


class CropDataset(Dataset):
    """``(index, epoch)`` -> {"wave": float32 [window_samples], "species", "index" and "offset_s" of the clip
    used, "bad": [unreadable indices]}.

    A clip that cannot be read is replaced by the next readable one of its kind (bird clips are the first
    ``n_birds``, background clips the rest), so batch shapes stay equal across processes, and reported in
    ``bad``. A key ``(index, epoch, draw)`` is a background draw (:class:`EpochBatches`).
    """

    def __init__(self, clips: Sequence[Clip], sample_rate: int, window_samples: int, seed: int,
                 n_birds: int | None = None) -> None:
        self.clips = list(clips)
        self.sample_rate = sample_rate
        self.window_samples = window_samples
        self.seed = seed
        self.n_birds = len(self.clips) if n_birds is None else n_birds
        self.decoded = DecodedClips()

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, ...]) -> dict:
        index, epoch, *draw = key
        lo, hi = (0, self.n_birds) if index < self.n_birds else (self.n_birds, len(self.clips))
        bad: list[int] = []
        for k in range(hi - lo):
            i = lo + (index - lo + k) % (hi - lo)
            try:
                wave, offset = self.crop(self.clips[i], np.random.default_rng([self.seed, epoch, i, *draw]))
            except AudioError:
                bad.append(i)
                continue
            return {"wave": torch.from_numpy(wave), "species": self.clips[i].species, "bad": bad, "index": i,
                    "offset_s": offset}
        raise AudioError("training data", "no clip could be read", "check the dataset's audio files")

    def crop(self, clip: Clip, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """A window-long crop of ``clip`` and where it starts (s); shorter clips are repeat-padded."""
        window_s = self.window_samples / self.sample_rate
        if clip.end_s is not None:
            duration = clip.end_s - clip.start_s
        else:
            duration = (clip.duration_s if clip.duration_s else self.decoded.info(clip.path).duration_s) - clip.start_s
        offset = clip.start_s
        if duration > window_s:
            offset += float(rng.uniform(0.0, duration - window_s))
            x = self.decoded.read(clip.path, self.sample_rate, offset, window_s)
        elif clip.start_s or clip.end_s is not None:
            x = self.decoded.read(clip.path, self.sample_rate, offset, duration)
        else:
            x = self.decoded.read(clip.path, self.sample_rate, 0.0, None)
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

    With ``background`` clips (indices ``n`` to ``n + background - 1``) and ``background_per_batch`` = k, a
    global batch is ``G - k`` bird clips and k background draws ``(n + j, epoch, b + 1)`` (background clips in
    turn from a permutation seeded by ``(seed, e, 0xB6)``), shuffled together by ``(seed, e, b, 0xB7)``.
    An epoch is one pass over the bird clips.
    """

    def __init__(self, n: int, global_batch: int, *, seed: int, epochs: int, rank: int = 0, world: int = 1,
                 start_epoch: int = 0, start_batch: int = 0, background: int = 0,
                 background_per_batch: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"batch size {global_batch} is not divisible by {world} processes")
        if (background_per_batch and not background) or not 0 <= background_per_batch < global_batch:
            raise ValueError(f"{background_per_batch} background clips per batch of {global_batch} "
                             f"(from {background} background clips)")
        self.n, self.global_batch, self.seed, self.epochs = n, global_batch, seed, epochs
        self.rank, self.world = rank, world
        self.start_epoch, self.start_batch = start_epoch, start_batch
        self.background, self.background_per_batch = background, background_per_batch

    @property
    def bird_batch(self) -> int:
        return self.global_batch - self.background_per_batch

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.bird_batch

    def __len__(self) -> int:
        return max(0, (self.epochs - self.start_epoch) * self.batches_per_epoch - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        per_rank = self.global_batch // self.world
        k = self.background_per_batch
        for epoch in range(self.start_epoch, self.epochs):
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            turns = np.random.default_rng([self.seed, epoch, 0xB6]).permutation(self.background) if k else None
            first = self.start_batch if epoch == self.start_epoch else 0
            for b in range(first, self.batches_per_epoch):
                chunk = perm[b * self.bird_batch : (b + 1) * self.bird_batch]
                keys: list[tuple[int, ...]] = [(int(i), epoch) for i in chunk]
                if k:
                    picks = turns[np.arange(b * k, (b + 1) * k) % self.background]
                    keys += [(self.n + int(j), epoch, b + 1) for j in picks]
                    order = np.random.default_rng([self.seed, epoch, b, 0xB7]).permutation(len(keys))
                    keys = [keys[o] for o in order]
                yield keys[self.rank * per_rank : (self.rank + 1) * per_rank]

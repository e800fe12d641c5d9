"""A whole synthetic world on disk: taxonomy, recordings, photos, manifests and the species' traits.

Layout of ``out_dir`` (paths in the manifests are relative to it)::

    taxonomy.csv                      Taxonomy.to_csv
    audio/<code>/<code>-rec000.wav    16-bit PCM mono
    audio.csv                         id, path, species, split, duration_s, call_onsets, call_offsets
    images/<code>/<code>-img000.png   RGB
    images.csv                        id, path, species, split, source, licence, photographer
    videos/<code>/<code>-vid000.mp4   only with videos_per_species > 0: H.264 + AAC (demo.videos)
    videos.csv                        id, path, species, split, fps, frame_count, duration_s, visible_start,
                                      visible_end, call_onsets, call_offsets, target_second, reliable_audio
    dataset.yaml                      {type: manifest, name: demo-world, audio, images, [videos,] taxonomy}
    soundscapes/soundscape000.wav     only with soundscapes > 0: minutes of backgrounds and calls (demo.soundscapes)
    soundscapes/soundscape000.Table.1.selections.txt   Raven table: one selection per call, Species column
    soundscapes/soundscape000.truth.json               backgrounds (start, end, class), calls with SNRs, community
    soundscapes/soundscapes.csv       id, path (relative to soundscapes/), split ("valid" or "test"), duration_s
    soundscapes/dataset.yaml          {type: soundscape, name: demo-soundscapes, recordings: soundscapes.csv, ...}
    background/<class>/<class>-bg000.wav   only with background_per_class > 0: non-bird sound (demo.backgrounds)
    background.csv                    id, path, label, split, duration_s
    world.json                        config and every species' trait values

Every item has its own random generator keyed by (seed, kind, species, item), so the output does not
depend on the order or the process in which items are made: the same config gives the same bytes.
The world is built in a temporary folder beside ``out_dir`` and renamed into place when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from birdbridge.demo.backgrounds import BACKGROUND_CLASSES, background_clip
from birdbridge.demo.calls import synth_call
from birdbridge.demo.names import generate_taxonomy
from birdbridge.demo.pictures import draw_bird
from birdbridge.demo.soundscapes import (
    WINDOW_S,
    BackgroundSegment,
    SoundscapeCall,
    SoundscapeItem,
    raven_table,
    render_soundscape,
)
from birdbridge.demo.traits import LEVEL_SCALES, AcousticTraits, VisualTraits, sample_acoustic, sample_visual
from birdbridge.demo.videos import VideoItem, render_clip, write_clip
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.taxonomy import Species, Taxonomy, load_taxonomy_csv

__all__ = ["AudioItem", "BackgroundItem", "ImageItem", "SoundscapeItem", "VideoItem", "World", "WorldConfig",
           "generate_world"]

FORMAT = "birdbridge-demo-world"
VERSION = 1
AUDIO_COLUMNS = ("id", "path", "species", "split", "duration_s", "call_onsets", "call_offsets")
IMAGE_COLUMNS = ("id", "path", "species", "split", "source", "licence", "photographer")
VIDEO_COLUMNS = ("id", "path", "species", "split", "fps", "frame_count", "duration_s", "visible_start", "visible_end",
                 "call_onsets", "call_offsets", "target_second", "reliable_audio")
SOUNDSCAPE_COLUMNS = ("id", "path", "split", "duration_s")
BACKGROUND_COLUMNS = ("id", "path", "label", "split", "duration_s")
_AUDIO, _IMAGES, _SPLIT, _VIDEOS, _SOUNDSCAPES, _BACKGROUND = 1, 2, 3, 4, 5, 6  # random stream tags
# left out of world.json when their count is 0, so older worlds keep their bytes
_VIDEO_FIELDS = ("videos_per_species", "video_s", "video_fps", "video_visible")
_SOUNDSCAPE_FIELDS = ("soundscapes", "soundscape_s", "soundscape_bird_free")
_BACKGROUND_FIELDS = ("background_per_class",)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class WorldConfig:
    """Size and randomness of a world. ``visual_seed`` (default ``seed``) re-dresses the species only."""

    n_orders: int = 3
    families_per_order: int = 2
    genera_per_family: int = 2
    species_per_genus: int = 2
    recordings_per_species: int = 24
    test_fraction: float = 0.3  # per species, for recordings and pictures alike
    images_per_species: int = 24
    sample_rate: int = 16000
    clip_s: tuple[float, float] = (1.0, 3.0)
    snr_db: tuple[float, float] = (0.0, 20.0)
    image_size: int = 64
    seed: int = 0
    visual_seed: int | None = None
    videos_per_species: int = 0  # clips with sound, the bird in view for part of each (demo.videos)
    video_s: tuple[float, float] = (4.0, 6.0)
    video_fps: float = 8.0
    video_visible: tuple[float, float] = (0.2, 0.35)  # fraction of a clip's frames that show the bird
    soundscapes: int = 0  # long recordings with changing backgrounds and calls now and then (demo.soundscapes)
    soundscape_s: float = 120.0  # a whole number of 5 s windows
    soundscape_bird_free: tuple[float, float] = (0.5, 0.7)  # share of a soundscape's 5 s windows without birds
    background_per_class: int = 0  # background-only clips (clip_s long) per class (demo.backgrounds)

    def __post_init__(self) -> None:
        for name in ("n_orders", "families_per_order", "genera_per_family", "species_per_genus"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("recordings_per_species", "images_per_species", "videos_per_species", "soundscapes",
                     "background_per_class"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        object.__setattr__(self, "clip_s", tuple(float(v) for v in self.clip_s))
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        if len(self.clip_s) != 2 or not 0.25 <= self.clip_s[0] <= self.clip_s[1]:
            raise ValueError(f"clip_s must be (min, max) with 0.25 <= min <= max, got {self.clip_s}")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db must be (min, max), got {self.snr_db}")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be at least 8000 Hz, got {self.sample_rate}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        object.__setattr__(self, "video_s", tuple(float(v) for v in self.video_s))
        object.__setattr__(self, "video_visible", tuple(float(v) for v in self.video_visible))
        if not 1.0 <= self.video_fps <= 60.0:
            raise ValueError(f"video_fps must be in [1, 60], got {self.video_fps}")
        if len(self.video_visible) != 2 or not 0.0 < self.video_visible[0] <= self.video_visible[1] <= 1.0:
            raise ValueError(f"video_visible must be (min, max) with 0 < min <= max <= 1, got {self.video_visible}")
        if len(self.video_s) != 2 or not self.video_s[0] <= self.video_s[1] or (
            self.video_s[0] * self.video_visible[0] < 0.25
        ):
            raise ValueError(f"video_s must be (min, max) with min * video_visible[0] >= 0.25 s (room for a call), "
                             f"got {self.video_s}")
        object.__setattr__(self, "soundscape_s", float(self.soundscape_s))
        object.__setattr__(self, "soundscape_bird_free", tuple(float(v) for v in self.soundscape_bird_free))
        windows = self.soundscape_s / WINDOW_S
        if windows < 1 or abs(windows - round(windows)) > 1e-9:
            raise ValueError(f"soundscape_s must be a whole number of {WINDOW_S:g} s windows, got {self.soundscape_s}")
        free = self.soundscape_bird_free
        if len(free) != 2 or not 0.0 <= free[0] <= free[1] <= 1.0:
            raise ValueError(f"soundscape_bird_free must be (min, max) with 0 <= min <= max <= 1, got {free}")

    @property
    def n_species(self) -> int:
        return self.n_orders * self.families_per_order * self.genera_per_family * self.species_per_genus

    @property
    def resolved_visual_seed(self) -> int:
        return self.seed if self.visual_seed is None else self.visual_seed

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class AudioItem:
    """One recording; ``path`` is relative to the world folder; call times in seconds."""

    id: str
    path: str
    species: str  # scientific name
    split: str  # "train" or "test"
    duration_s: float
    call_onsets: tuple[float, ...]
    call_offsets: tuple[float, ...]


@dataclass(frozen=True)
class ImageItem:
    """One photo; ``path`` is relative to the world folder."""

    id: str
    path: str
    species: str
    split: str
    source: str = "demo"
    licence: str = "CC0"
    photographer: str = "birdbridge demo"


@dataclass(frozen=True)
class BackgroundItem:
    """One background-only recording (no bird); ``label`` is its class (demo.backgrounds)."""

    id: str
    path: str
    label: str
    split: str
    duration_s: float


@dataclass(frozen=True, eq=False)
class World:
    """A generated world: its folder, config, taxonomy, items and per-species traits."""

    root: Path
    config: WorldConfig
    taxonomy: Taxonomy
    audio: tuple[AudioItem, ...]
    images: tuple[ImageItem, ...]
    acoustic: np.ndarray  # [S, len(AcousticTraits.NAMES)], rows in taxonomy order
    visual: np.ndarray  # [S, len(VisualTraits.NAMES)]
    videos: tuple[VideoItem, ...] = ()
    soundscapes: tuple[SoundscapeItem, ...] = ()
    background: tuple[BackgroundItem, ...] = ()

    def acoustic_traits(self, species: str | Species | int) -> AcousticTraits:
        """Traits of a species given by position, scientific name, common name or code."""
        return AcousticTraits.from_vector(self.acoustic[self._index(species)])

    def visual_traits(self, species: str | Species | int) -> VisualTraits:
        return VisualTraits.from_vector(self.visual[self._index(species)])

    def _index(self, species: str | Species | int) -> int:
        return species if isinstance(species, int) else self.taxonomy.index(species)

    def audio_items(self, split: str | None = None) -> list[AudioItem]:
        return [a for a in self.audio if split is None or a.split == split]

    def image_items(self, split: str | None = None) -> list[ImageItem]:
        return [i for i in self.images if split is None or i.split == split]

    def video_items(self, split: str | None = None) -> list[VideoItem]:
        return [v for v in self.videos if split is None or v.split == split]

    def soundscape_items(self, split: str | None = None) -> list[SoundscapeItem]:
        """Soundscapes of a split ("valid" to calibrate on, "test"), or all."""
        return [s for s in self.soundscapes if split is None or s.split == split]

    def background_items(self, split: str | None = None, label: str | None = None) -> list[BackgroundItem]:
        """Background-only recordings of a split and class, or all."""
        return [b for b in self.background
                if (split is None or b.split == split) and (label is None or b.label == label)]

    def path(self, item: AudioItem | ImageItem | VideoItem | SoundscapeItem | BackgroundItem) -> Path:
        return self.root / item.path

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> World:
        """Read a world written by :func:`generate_world`; raises InputError if it is incomplete."""
        root = Path(out_dir)
        meta_path = root / "world.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(str(root), "is not a demo world (no world.json)", "generate it first") from None
        except (OSError, ValueError) as exc:
            raise InputError(str(meta_path), f"cannot be read: {exc}") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise InputError(str(meta_path), f"is not a version-{VERSION} {FORMAT} file", "generate the world again")
        config = WorldConfig.from_dict(meta["config"])
        taxonomy = load_taxonomy_csv(root / "taxonomy.csv")
        by_name = {row["scientific_name"]: row for row in meta["species"]}
        try:
            acoustic = np.array([[by_name[k]["acoustic"][n] for n in AcousticTraits.NAMES] for k in taxonomy.keys])
            visual = np.array([[by_name[k]["visual"][n] for n in VisualTraits.NAMES] for k in taxonomy.keys])
        except KeyError as exc:
            raise InputError(str(meta_path), f"has no trait value for {exc}", "generate the world again") from None
        audio = tuple(
            AudioItem(r["id"], r["path"], r["species"], r["split"], float(r["duration_s"]),
                      _floats(r["call_onsets"]), _floats(r["call_offsets"]))
            for r in _read_rows(root / "audio.csv", AUDIO_COLUMNS)
        )
        images = tuple(ImageItem(**r) for r in _read_rows(root / "images.csv", IMAGE_COLUMNS))
        videos = tuple(
            VideoItem(r["id"], r["path"], r["species"], r["split"], float(r["fps"]), int(r["frame_count"]),
                      float(r["duration_s"]), float(r["visible_start"]), float(r["visible_end"]),
                      _floats(r["call_onsets"]), _floats(r["call_offsets"]))
            for r in (_read_rows(root / "videos.csv", VIDEO_COLUMNS) if config.videos_per_species > 0 else [])
        )
        soundscapes = tuple(_load_soundscape(root, r) for r in (
            _read_rows(root / "soundscapes" / "soundscapes.csv", SOUNDSCAPE_COLUMNS) if config.soundscapes > 0 else []))
        background = tuple(
            BackgroundItem(r["id"], r["path"], r["label"], r["split"], float(r["duration_s"]))
            for r in (_read_rows(root / "background.csv", BACKGROUND_COLUMNS) if config.background_per_class > 0
                      else [])
        )
        heard = [(s.id, k) for s in soundscapes for k in (*s.community, *(c.species for c in s.calls))]
        for item_id, species in [*((i.id, i.species) for i in (*audio, *images, *videos)), *heard]:
            if species not in taxonomy:
                raise InputError(str(root), f"item {item_id!r} has species {species!r}, not in taxonomy.csv")
        for path in [i.path for i in (*audio, *images, *videos, *soundscapes, *background)] + [
                s.selections_path for s in soundscapes]:
            if not (root / path).is_file():
                raise InputError(str(root / path), "file not found", "the world is incomplete; generate it again")
        return cls(root, config, taxonomy, audio, images, acoustic, visual, videos, soundscapes, background)


def _load_soundscape(root: Path, row: dict[str, str]) -> SoundscapeItem:
    path = f"soundscapes/{row['path']}"
    truth_path = root / (path.removesuffix(".wav") + ".truth.json")
    try:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        calls = tuple(SoundscapeCall(c["begin_s"], c["end_s"], c["low_hz"], c["high_hz"], c["species"], c["snr_db"])
                      for c in truth["calls"])
        segments = tuple(BackgroundSegment(b["start_s"], b["end_s"], b["label"], b["level_db"])
                         for b in truth["backgrounds"])
        community, floor_db = tuple(truth["community"]), float(truth["floor_db"])
    except FileNotFoundError:
        raise InputError(str(truth_path), "file not found", "the world is incomplete; generate it again") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(truth_path), f"cannot be read: {exc!r}", "generate the world again") from None
    return SoundscapeItem(row["id"], path, row["split"], float(row["duration_s"]), calls, segments, community,
                          floor_db)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split())


def _read_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(str(path), "file not found", "the world is incomplete; generate it again") from None
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if rows and set(columns) - set(rows[0]):
        raise InputError(str(path), f"needs the columns {', '.join(columns)}")
    return [{c: r[c] for c in columns} for r in rows]


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _splits(n: int, fraction: float, rng: np.random.Generator, names: tuple[str, str] = ("train", "test")) -> list[str]:
    """``n`` labels with round(n * fraction) ``names[1]`` (at least one and not all, when n >= 2), else ``names[0]``."""
    n_test = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(n * fraction)))
    test = set(rng.permutation(n)[:n_test].tolist())
    return [names[1] if i in test else names[0] for i in range(n)]


# ------------------------------------------------------------------------------------------- items

@dataclass(frozen=True)
class _Job:
    kind: int  # _AUDIO, _IMAGES, _VIDEOS, _SOUNDSCAPES or _BACKGROUND
    species: int  # the species' position; a background's class position; 0 for a soundscape
    index: int
    item_id: str
    path: str
    label: str  # the species' scientific name; a background's class
    split: str


def _make_audio(job: _Job, root: Path, cfg: WorldConfig, acoustic: np.ndarray) -> AudioItem:
    rng = np.random.default_rng([cfg.seed, _AUDIO, job.species, job.index])
    n = round(rng.uniform(*cfg.clip_s) * cfg.sample_rate)
    others = [AcousticTraits.from_vector(row) for i, row in enumerate(acoustic) if i != job.species]
    rec = synth_call(AcousticTraits.from_vector(acoustic[job.species]), rng, cfg.sample_rate,
                     n / cfg.sample_rate, snr_db=cfg.snr_db, others=others)
    target = root / job.path
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, rec.audio, cfg.sample_rate, subtype="PCM_16", format="WAV")
    return AudioItem(job.item_id, job.path, job.label, job.split, len(rec.audio) / cfg.sample_rate,
                     rec.onsets, rec.offsets)


def _make_image(job: _Job, root: Path, cfg: WorldConfig, visual: np.ndarray) -> ImageItem:
    rng = np.random.default_rng([cfg.resolved_visual_seed, _IMAGES, job.species, job.index])
    image = draw_bird(VisualTraits.from_vector(visual[job.species]), rng, cfg.image_size)
    target = root / job.path
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="PNG")
    return ImageItem(job.item_id, job.path, job.label, job.split)


def _make_video(job: _Job, root: Path, cfg: WorldConfig, acoustic: np.ndarray, visual: np.ndarray) -> VideoItem:
    """A clip: timing and sound from the world's seed, pictures from its visual seed."""
    clip = render_clip(
        VisualTraits.from_vector(visual[job.species]), AcousticTraits.from_vector(acoustic[job.species]),
        np.random.default_rng([cfg.seed, _VIDEOS, job.species, job.index]),
        picture_rng=np.random.default_rng([cfg.resolved_visual_seed, _VIDEOS, _IMAGES, job.species, job.index]),
        size=cfg.image_size, fps=cfg.video_fps, duration_s=cfg.video_s, visible_fraction=cfg.video_visible,
        sample_rate=cfg.sample_rate, snr_db=cfg.snr_db,
    )
    write_clip(root / job.path, clip)
    return VideoItem(job.item_id, job.path, job.label, job.split, clip.fps, len(clip.frames),
                     round(clip.duration_s, 4), round(clip.visible_start, 4), round(clip.visible_end, 4),
                     clip.call_onsets, clip.call_offsets)


def _make_soundscape(job: _Job, root: Path, cfg: WorldConfig, acoustic: np.ndarray,
                     names: Sequence[str]) -> SoundscapeItem:
    """A soundscape over all species (each recording picks its own community), its Raven table and truth."""
    scape = render_soundscape(names, [AcousticTraits.from_vector(row) for row in acoustic],
                              np.random.default_rng([cfg.seed, _SOUNDSCAPES, 0, job.index]), cfg.sample_rate,
                              cfg.soundscape_s, bird_free=cfg.soundscape_bird_free, snr_db=cfg.snr_db)
    item = SoundscapeItem(job.item_id, job.path, job.split, scape.duration_s, scape.calls, scape.backgrounds,
                          scape.community, scape.floor_db)
    target = root / job.path
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, scape.audio, cfg.sample_rate, subtype="PCM_16", format="WAV")
    (root / item.selections_path).write_text(raven_table(scape.calls), encoding="utf-8")
    truth = {
        "id": item.id,
        "duration_s": item.duration_s,
        "sample_rate": cfg.sample_rate,
        "community": list(item.community),
        "floor_db": item.floor_db,
        "backgrounds": [asdict(b) for b in item.backgrounds],
        "calls": [{"selection": i, **asdict(c)} for i, c in enumerate(item.calls, start=1)],
    }
    (root / item.truth_path).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return item


def _make_background(job: _Job, root: Path, cfg: WorldConfig) -> BackgroundItem:
    rng = np.random.default_rng([cfg.seed, _BACKGROUND, job.species, job.index])
    n = round(rng.uniform(*cfg.clip_s) * cfg.sample_rate)
    target = root / job.path
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, background_clip(job.label, n, cfg.sample_rate, rng), cfg.sample_rate, subtype="PCM_16",
             format="WAV")
    return BackgroundItem(job.item_id, job.path, job.label, job.split, n / cfg.sample_rate)


_Item = AudioItem | ImageItem | VideoItem | SoundscapeItem | BackgroundItem


def _run_chunk(jobs: list[_Job], root: Path, cfg: WorldConfig, acoustic: np.ndarray, visual: np.ndarray,
               names: Sequence[str]) -> list[_Item]:
    return [
        _make_audio(j, root, cfg, acoustic) if j.kind == _AUDIO
        else _make_image(j, root, cfg, visual) if j.kind == _IMAGES
        else _make_video(j, root, cfg, acoustic, visual) if j.kind == _VIDEOS
        else _make_soundscape(j, root, cfg, acoustic, names) if j.kind == _SOUNDSCAPES
        else _make_background(j, root, cfg)
        for j in jobs
    ]


def _plan(taxonomy: Taxonomy, cfg: WorldConfig) -> list[_Job]:
    jobs: list[_Job] = []
    for kind, count, folder, tag, ext in (
        (_AUDIO, cfg.recordings_per_species, "audio", "rec", "wav"),
        (_IMAGES, cfg.images_per_species, "images", "img", "png"),
        (_VIDEOS, cfg.videos_per_species, "videos", "vid", "mp4"),
    ):
        for s, sp in enumerate(taxonomy):
            splits = _splits(count, cfg.test_fraction, np.random.default_rng([cfg.seed, _SPLIT, kind, s]))
            for j, split in enumerate(splits):
                item_id = f"{sp.code}-{tag}{j:03d}"
                jobs.append(_Job(kind, s, j, item_id, f"{folder}/{sp.code}/{item_id}.{ext}", sp.key, split))
    for c, label in enumerate(BACKGROUND_CLASSES):
        splits = _splits(cfg.background_per_class, cfg.test_fraction,
                         np.random.default_rng([cfg.seed, _SPLIT, _BACKGROUND, c]))
        for j, split in enumerate(splits):
            item_id = f"{label}-bg{j:03d}"
            jobs.append(_Job(_BACKGROUND, c, j, item_id, f"background/{label}/{item_id}.wav", label, split))
    # a test_fraction share of the soundscapes is for calibration ("valid"), the rest for evaluation
    splits = _splits(cfg.soundscapes, cfg.test_fraction, np.random.default_rng([cfg.seed, _SPLIT, _SOUNDSCAPES]),
                     names=("test", "valid"))
    for j, split in enumerate(splits):
        item_id = f"soundscape{j:03d}"
        jobs.append(_Job(_SOUNDSCAPES, 0, j, item_id, f"soundscapes/{item_id}.wav", "", split))
    return jobs


# ------------------------------------------------------------------------------------------- world

def _config_dict(cfg: WorldConfig) -> dict[str, Any]:
    """The config for world.json; without videos, soundscapes or background clips their fields are left out
    (older worlds' bytes)."""
    config = asdict(cfg)
    for count, names in ((cfg.videos_per_species, _VIDEO_FIELDS), (cfg.soundscapes, _SOUNDSCAPE_FIELDS),
                         (cfg.background_per_class, _BACKGROUND_FIELDS)):
        if count == 0:
            for name in names:
                del config[name]
    return config


def _world_json(cfg: WorldConfig, taxonomy: Taxonomy, acoustic: np.ndarray, visual: np.ndarray) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": _config_dict(cfg),
        "seed": cfg.seed,
        "visual_seed": cfg.resolved_visual_seed,
        "level_scales": LEVEL_SCALES,
        "species": [
            {
                "scientific_name": sp.key,
                "common_name": sp.common_name,
                "code": sp.code,
                "acoustic": dict(zip(AcousticTraits.NAMES, acoustic[s].tolist(), strict=True)),
                "visual": dict(zip(VisualTraits.NAMES, visual[s].tolist(), strict=True)),
            }
            for s, sp in enumerate(taxonomy)
        ],
    }


def _is_world(folder: Path) -> bool:
    try:
        return json.loads((folder / "world.json").read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _sibling(out_dir: Path, tag: str) -> Path:
    return out_dir.with_name(f".{out_dir.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def _check_target(out_dir: Path) -> bool:
    """True if ``out_dir`` holds an earlier world; raises if it holds anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BirdbridgeError(f"{out_dir} is a file, not a folder; choose a folder for the demo world")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return False
    if not _is_world(out_dir):
        raise BirdbridgeError(
            f"{out_dir} is not empty and holds no demo world; refusing to replace it (choose an empty or new folder)"
        )
    return True


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` onto ``out_dir``, replacing an earlier world there (never other content)."""
    for _ in range(3):
        old = None
        if _check_target(out_dir):
            old = _sibling(out_dir, "old")
            try:
                os.replace(out_dir, old)
            except FileNotFoundError:  # someone else moved it first
                continue
        try:
            os.replace(tmp, out_dir)
            return
        except OSError:  # a concurrent writer published first; try again
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    raise BirdbridgeError(f"could not move the new world into {out_dir} (is another process writing it?)")


def generate_world(
    out_dir: str | os.PathLike[str],
    cfg: WorldConfig | None = None,
    *,
    progress: Progress | None = None,
    workers: int = 1,
) -> World:
    """Generate a world into ``out_dir`` (replacing an earlier world there) and return it.

    ``progress(done, total)`` is called as recordings, pictures, videos, soundscapes and background clips
    are made (``total`` is their number). ``workers`` > 1 makes items in that many (spawned) processes; the
    files are identical either way. Each worker costs a second or two to start, so this pays off for large
    worlds only (or for several soundscapes: each is a job of its own).
    """
    cfg = WorldConfig() if cfg is None else cfg
    out_dir = Path(out_dir)
    _check_target(out_dir)  # fail before the work, not after
    taxonomy = generate_taxonomy(cfg.n_orders, cfg.families_per_order, cfg.genera_per_family,
                                 cfg.species_per_genus, seed=cfg.seed)
    acoustic = sample_acoustic(taxonomy, cfg.seed)
    visual = sample_visual(taxonomy, cfg.resolved_visual_seed)
    jobs = _plan(taxonomy, cfg)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out_dir, "tmp")
    tmp.mkdir()
    try:
        items = _make_items(jobs, tmp, cfg, acoustic, visual, taxonomy.keys, progress, workers)
        audio = tuple(i for i in items if isinstance(i, AudioItem))
        images = tuple(i for i in items if isinstance(i, ImageItem))
        videos = tuple(i for i in items if isinstance(i, VideoItem))
        soundscapes = tuple(i for i in items if isinstance(i, SoundscapeItem))
        background = tuple(i for i in items if isinstance(i, BackgroundItem))
        # The folder is published as a whole, so files are written directly (with the usual permissions).
        (tmp / "audio.csv").write_text(_csv_text(AUDIO_COLUMNS, (
            (a.id, a.path, a.species, a.split, repr(a.duration_s), " ".join(f"{t:.4f}" for t in a.call_onsets),
             " ".join(f"{t:.4f}" for t in a.call_offsets)) for a in audio)), encoding="utf-8")
        (tmp / "images.csv").write_text(_csv_text(IMAGE_COLUMNS, (
            (i.id, i.path, i.species, i.split, i.source, i.licence, i.photographer) for i in images)),
            encoding="utf-8")
        if cfg.videos_per_species > 0:
            (tmp / "videos.csv").write_text(_csv_text(VIDEO_COLUMNS, (
                (v.id, v.path, v.species, v.split, repr(v.fps), v.frame_count, repr(v.duration_s),
                 repr(v.visible_start), repr(v.visible_end), " ".join(f"{t:.4f}" for t in v.call_onsets),
                 " ".join(f"{t:.4f}" for t in v.call_offsets), repr(v.target_second), "true") for v in videos)),
                encoding="utf-8")
        if cfg.soundscapes > 0:
            _write_soundscape_dataset(tmp / "soundscapes", soundscapes)
        if cfg.background_per_class > 0:
            (tmp / "background.csv").write_text(_csv_text(BACKGROUND_COLUMNS, (
                (b.id, b.path, b.label, b.split, repr(b.duration_s)) for b in background)), encoding="utf-8")
        taxonomy.to_csv(tmp / "taxonomy.csv")
        shutil.copymode(tmp / "audio.csv", tmp / "taxonomy.csv")  # to_csv's temporary file was private
        dataset = {"type": "manifest", "name": "demo-world", "audio": "audio.csv", "images": "images.csv",
                   **({"videos": "videos.csv"} if cfg.videos_per_species > 0 else {}), "taxonomy": "taxonomy.csv"}
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False), encoding="utf-8")
        meta = json.dumps(_world_json(cfg, taxonomy, acoustic, visual), indent=2, ensure_ascii=False)
        (tmp / "world.json").write_text(meta + "\n", encoding="utf-8")  # last: marks the world complete
        _publish(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return World(out_dir, cfg, taxonomy, audio, images, acoustic, visual, videos, soundscapes, background)


def _write_soundscape_dataset(folder: Path, soundscapes: Sequence[SoundscapeItem]) -> None:
    """``soundscapes.csv`` (paths relative to ``folder``) and the ``dataset.yaml`` a soundscape loader reads."""
    (folder / "soundscapes.csv").write_text(_csv_text(SOUNDSCAPE_COLUMNS, (
        (s.id, Path(s.path).relative_to(folder.name).as_posix(), s.split, repr(s.duration_s)) for s in soundscapes)),
        encoding="utf-8")
    descriptor = {
        "type": "soundscape",
        "name": "demo-soundscapes",
        "recordings": "soundscapes.csv",  # path, split (and id, duration_s), relative to this folder
        "annotations": ".",  # Raven tables beside the recordings
        "annotation_format": "raven",
        "species_column": "Species",
        "taxonomy": "../taxonomy.csv",
        "window_s": int(WINDOW_S),
        "hop_s": int(WINDOW_S),
        "min_overlap_s": 0.5,
        "min_overlap_fraction": 1.0,  # a call shorter than 0.5 s labels the windows it lies in (the world's truth)
    }
    (folder / "dataset.yaml").write_text(yaml.safe_dump(descriptor, sort_keys=False), encoding="utf-8")


def _make_items(
    jobs: list[_Job],
    root: Path,
    cfg: WorldConfig,
    acoustic: np.ndarray,
    visual: np.ndarray,
    names: Sequence[str],
    progress: Progress | None,
    workers: int,
) -> list[_Item]:
    total = len(jobs)
    light = [j for j in jobs if j.kind != _SOUNDSCAPES]
    chunks = [[j] for j in jobs if j.kind == _SOUNDSCAPES] + [light[i : i + 16] for i in range(0, len(light), 16)]
    done = 0
    results: list[_Item] = []
    if workers <= 1 or len(chunks) <= 1:
        for job in jobs:
            results += _run_chunk([job], root, cfg, acoustic, visual, names)
            if progress is not None:
                progress(len(results), total)
        return results
    # "spawn": safe even when the caller has threads (e.g. torch) running
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_run_chunk, chunk, root, cfg, acoustic, visual, names) for chunk in chunks]
        for future in futures:
            part = future.result()
            results += part
            done += len(part)
            if progress is not None:
                progress(done, total)
    return results

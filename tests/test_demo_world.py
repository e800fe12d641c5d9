"""The synthetic demo world: names, inherited traits, calls, pictures and the files on disk."""

from __future__ import annotations

import colorsys
import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from birdbridge.audio.io import read_audio
from birdbridge.demo.calls import render_call, synth_call
from birdbridge.demo.names import ebird_code, generate_taxonomy
from birdbridge.demo.pictures import (
    BACKGROUND_MAX_CHROMA,
    LIGHTING_RANGE,
    Pose,
    draw_background,
    draw_bird,
    random_scene,
)
from birdbridge.demo.traits import (
    BODY_MIN_CHROMA,
    AcousticTraits,
    VisualTraits,
    sample_acoustic,
    sample_visual,
)
from birdbridge.demo.world import AUDIO_COLUMNS, IMAGE_COLUMNS, World, WorldConfig, generate_world
from birdbridge.errors import BirdbridgeError, InputError
from birdbridge.species.taxonomy import Species, load_taxonomy_csv, split_scientific_name

TINY = WorldConfig(
    n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2,
    recordings_per_species=4, images_per_species=4, clip_s=(1.0, 1.5), seed=7,
)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return generate_world(tmp_path_factory.mktemp("demo") / "world", TINY)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _chroma(image: Image.Image) -> np.ndarray:
    a = np.asarray(image, dtype=np.int16)
    return a.max(axis=2) - a.min(axis=2)


def _hue_distance(image: Image.Image, rgb: tuple[int, int, int]) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64) / 255
    mx, mn = a.max(axis=2), a.min(axis=2)
    c = np.maximum(mx - mn, 1e-9)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    hue = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4)) / 6
    target = colorsys.rgb_to_hsv(*(v / 255 for v in rgb))[0]
    d = np.abs(hue - target)
    return np.minimum(d, 1 - d)


# ------------------------------------------------------------------------------------------ names


def test_names_are_unique_valid_and_deterministic() -> None:
    tax = generate_taxonomy(4, 3, 3, 3, seed=1)
    assert len(tax) == 108
    assert tax == generate_taxonomy(4, 3, 3, 3, seed=1)
    assert tax != generate_taxonomy(4, 3, 3, 3, seed=2)
    assert len({sp.common_name.casefold() for sp in tax}) == len(tax)
    assert len({sp.code for sp in tax}) == len(tax)
    assert len({sp.specific_epithet for sp in tax}) == len(tax)
    assert len({sp.genus for sp in tax}) == 4 * 3 * 3
    assert len({sp.family for sp in tax}) == 4 * 3
    assert len({sp.order for sp in tax}) == 4
    for sp in tax:
        assert (sp.kingdom, sp.phylum, sp.cls) == ("Animalia", "Chordata", "Aves")
        assert re.fullmatch(r"[A-Z][a-z]+iformes", sp.order) and re.fullmatch(r"[A-Z][a-z]+idae", sp.family)
        assert split_scientific_name(sp.scientific_name) == (sp.genus, sp.specific_epithet)
        assert Species.from_names(sp.scientific_name, sp.common_name, sp.code).key == sp.key
        assert re.fullmatch(r"[a-z]+[0-9]*", sp.code)
        assert re.fullmatch(r"[A-Z][a-z]+(-[a-z]+)? [A-Z][a-z]+(-[A-Z][a-z]+)?", sp.common_name), sp.common_name
    # species of a genus share their group noun, and the genera of a family a head noun
    for genus in {sp.genus for sp in tax}:
        nouns = {sp.common_name.split()[-1] for sp in tax if sp.genus == genus}
        assert len(nouns) == 1
    for family in {sp.family for sp in tax}:
        heads = {sp.common_name.split()[-1].split("-")[-1].lower() for sp in tax if sp.family == family}
        assert len(heads) == 1


def test_ebird_codes() -> None:
    assert ebird_code("Marsh Robin") == "marrob"
    assert ebird_code("Amber-crowned Robin") == "acrrob"
    assert ebird_code("Amber-crowned Rock-Thrush") == "acrthr"
    assert ebird_code("Desert Cloud-Robin") == "dclrob"


# ----------------------------------------------------------------------------------------- traits


def _mean_distances(traits: np.ndarray, tax) -> list[float]:
    """Mean distance of z-scored traits between species pairs: same genus, family, order, other."""
    z = (traits - traits.mean(0)) / (traits.std(0) + 1e-12)
    sums, counts = np.zeros(4), np.zeros(4)
    for i in range(len(tax)):
        for j in range(i + 1, len(tax)):
            a, b = tax[i], tax[j]
            level = 0 if a.genus == b.genus else 1 if a.family == b.family else 2 if a.order == b.order else 3
            sums[level] += np.linalg.norm(z[i] - z[j])
            counts[level] += 1
    return (sums / counts).tolist()


@pytest.mark.parametrize("sample", [sample_acoustic, sample_visual])
def test_traits_are_inherited(sample) -> None:
    dists = []
    for seed in range(4):
        tax = generate_taxonomy(4, 2, 2, 3, seed=seed)
        dists.append(_mean_distances(sample(tax, seed), tax))
    genus, family, order, other = np.mean(dists, axis=0)
    assert genus < family < order < other


def test_traits_are_in_range_and_stream_separated() -> None:
    tax = generate_taxonomy(3, 2, 2, 2, seed=3)
    acoustic, visual = sample_acoustic(tax, 3), sample_visual(tax, 3)
    assert acoustic.shape == (24, len(AcousticTraits.NAMES)) and visual.shape == (24, len(VisualTraits.NAMES))
    a = {n: acoustic[:, i] for i, n in enumerate(AcousticTraits.NAMES)}
    assert a["pitch_hz"].min() >= 1000 and a["pitch_hz"].max() <= 6000
    assert a["note_s"].min() > 0 and a["notes"].min() >= 0.5
    assert visual[:, :18].min() >= 0 and visual[:, :18].max() <= 255
    for row in visual:
        body = VisualTraits.from_vector(row).colour("body")
        assert max(body) - min(body) >= BODY_MIN_CHROMA - 1
    # each set has its own stream: the same seed does not give correlated genes
    assert np.array_equal(sample_acoustic(tax, 3), acoustic)
    assert not np.array_equal(sample_visual(tax, 4), visual)


def test_individuals_vary_around_the_species() -> None:
    tax = generate_taxonomy(1, 1, 1, 2, seed=0)
    species = VisualTraits.from_vector(sample_visual(tax, 0)[0])
    rng = np.random.default_rng(0)
    birds = np.stack([species.individual(rng).to_vector() for _ in range(50)])
    assert species.individual(rng, 0.0) == species
    assert np.abs(birds.mean(0) - species.to_vector()).max() < 20
    for row in birds:
        body = VisualTraits.from_vector(row).colour("body")
        assert max(body) - min(body) >= BODY_MIN_CHROMA - 1


# ------------------------------------------------------------------------------------------ calls


def _species_traits(seed: int = 0, n: int = 8) -> list[AcousticTraits]:
    tax = generate_taxonomy(2, 1, 2, 2, seed=seed)
    return [AcousticTraits.from_vector(row) for row in sample_acoustic(tax, seed)][:n]


def test_calls_have_energy_at_their_times_and_noise_elsewhere() -> None:
    for k, traits in enumerate(_species_traits()):
        rng = np.random.default_rng(k)
        rec = synth_call(traits, rng, 16000, 2.5, snr_db=(30.0, 30.0), click_p=0.0, other_p=0.0)
        x = rec.audio.astype(np.float64)
        assert rec.audio.dtype == np.float32 and len(x) == 40000 and 0 < np.abs(x).max() < 1
        assert rec.onsets and len(rec.onsets) == len(rec.offsets) and rec.distractors == ()
        assert all(0 < a < b <= 2.5 for a, b in zip(rec.onsets, rec.offsets, strict=True))
        assert all(b < a for b, a in zip(rec.offsets, rec.onsets[1:], strict=False))
        inside = np.zeros(len(x), dtype=bool)
        for a, b in zip(rec.onsets, rec.offsets, strict=True):
            inside[round(a * 16000) : round(b * 16000)] = True
        noise_rms = np.sqrt(np.mean(x[~inside] ** 2))
        for a in rec.onsets:  # the first note starts at the onset
            assert np.sqrt(np.mean(x[round(a * 16000) : round((a + 0.02) * 16000)] ** 2)) > 5 * noise_rms
        ratio = np.mean(x[inside] ** 2) / noise_rms**2
        assert 10 * np.log10(ratio) > 25  # the SNR asked for, give or take


def test_calls_at_low_snr_and_distractors() -> None:
    traits = _species_traits()
    rng = np.random.default_rng(1)
    seen: set[str] = set()
    for _ in range(20):
        rec = synth_call(traits[0], rng, 16000, 1.0, snr_db=(0.0, 5.0), others=traits[1:], click_p=0.5, other_p=0.5)
        assert 0.0 <= rec.snr_db <= 5.0 and np.isfinite(rec.audio).all() and np.abs(rec.audio).max() < 1
        assert rec.onsets[0] >= 0 and rec.offsets[-1] <= 1.0
        seen.update(rec.distractors)
    assert seen == {"clicks", "other-species"}
    short = synth_call(dataclasses.replace(traits[0], notes=7, note_s=0.25), rng, 16000, 0.3)
    assert len(short.onsets) == 1 and short.offsets[0] <= 0.3  # a call too long for the clip is cut


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    power = np.abs(np.fft.rfft(x, 1 << 16)) ** 2
    return float(np.fft.rfftfreq(1 << 16, 1 / sr)[power.argmax()])


def test_call_pitch_tracks_the_pitch_trait() -> None:
    traits = _species_traits(seed=1)
    for t in traits:  # a pure whistle sits exactly at the trait's pitch
        pure = dataclasses.replace(t, sweep_oct=0.0, step_oct=0.0, harmonic2=0.0, harmonic3=0.0, noisiness=0.0,
                                   am_depth=0.0)
        assert _peak_hz(render_call(pure, np.random.default_rng(0))) == pytest.approx(t.pitch_hz, rel=0.05)
    pitch = np.array([t.pitch_hz for t in traits])
    peaks = np.array([_peak_hz(render_call(t, np.random.default_rng(0))) for t in traits])
    assert np.abs(np.log2(peaks / pitch)).max() < 0.6
    assert np.corrcoef(np.log(peaks), np.log(pitch))[0, 1] > 0.95


# --------------------------------------------------------------------------------------- pictures


def _visual(seed: int = 0) -> list[VisualTraits]:
    tax = generate_taxonomy(2, 1, 2, 2, seed=seed)
    return [VisualTraits.from_vector(row) for row in sample_visual(tax, seed)]


def test_pictures_show_the_body_colour_and_differ_between_species() -> None:
    birds = _visual()
    rng = np.random.default_rng(0)
    scene = random_scene(rng, 64)
    same_spot = [np.asarray(draw_bird(t, np.random.default_rng(1), scene=scene, pose=Pose())) for t in birds]
    for i in range(len(birds)):
        for j in range(i + 1, len(birds)):
            assert np.abs(same_spot[i].astype(int) - same_spot[j].astype(int)).mean() > 1
    least_body_chroma = BODY_MIN_CHROMA * LIGHTING_RANGE[0]
    for t in birds:
        shares = []
        for _ in range(10):
            image = draw_bird(t, rng, 64)
            assert image.mode == "RGB" and image.size == (64, 64)
            body = (_hue_distance(image, t.colour("body")) < 0.07) & (_chroma(image) >= least_body_chroma)
            shares.append(body.mean())
        assert min(shares) > 0 and np.mean(shares) > 0.02


def test_backgrounds_never_have_a_body_colour() -> None:
    rng = np.random.default_rng(0)
    limit = BACKGROUND_MAX_CHROMA * LIGHTING_RANGE[1] + 1
    assert limit < BODY_MIN_CHROMA * LIGHTING_RANGE[0]
    for size in (32, 64):
        for _ in range(100):
            image = draw_background(rng, size)
            assert image.size == (size, size) and _chroma(image).max() <= limit
    # a scene kept for a video: same setting with and without the bird, fresh noise each frame
    scene = random_scene(rng, 64)
    empty, empty2 = np.asarray(draw_background(rng, scene=scene)), np.asarray(draw_background(rng, scene=scene))
    bird = np.asarray(draw_bird(_visual()[0], rng, scene=scene))
    assert np.abs(empty.astype(int) - empty2.astype(int)).mean() < 8
    assert (np.abs(bird.astype(int) - empty.astype(int)).max(axis=2) > 40).mean() > 0.01


# ------------------------------------------------------------------------------------------ world


def test_world_files_and_manifests(world: World) -> None:
    root = world.root
    assert {p.name for p in root.iterdir()} == {
        "audio", "images", "audio.csv", "images.csv", "taxonomy.csv", "dataset.yaml", "world.json"
    }
    assert yaml.safe_load((root / "dataset.yaml").read_text()) == {
        "type": "manifest", "name": "demo-world", "audio": "audio.csv", "images": "images.csv",
        "taxonomy": "taxonomy.csv",
    }  # fmt: skip
    assert load_taxonomy_csv(root / "taxonomy.csv") == world.taxonomy
    assert len(world.taxonomy) == 8 and len(world.audio) == 32 and len(world.images) == 32
    with open(root / "audio.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == AUDIO_COLUMNS and len(rows) == 32
    with open(root / "images.csv", newline="") as fh:
        assert tuple(next(csv.DictReader(fh))) == IMAGE_COLUMNS
    for row, item in zip(rows, world.audio, strict=True):
        sp = world.taxonomy[world.taxonomy.index(row["species"])]
        assert row["species"] == sp.scientific_name and row["path"] == f"audio/{sp.code}/{row['id']}.wav"
        info = sf.info(root / row["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        x = read_audio(root / row["path"])
        assert len(x) / 16000 == pytest.approx(float(row["duration_s"])) == pytest.approx(item.duration_s)
        assert 1.0 <= item.duration_s <= 1.5
        onsets = [float(v) for v in row["call_onsets"].split()]
        offsets = [float(v) for v in row["call_offsets"].split()]
        assert tuple(onsets) == item.call_onsets and tuple(offsets) == item.call_offsets and onsets
        assert all(0 <= a < b <= item.duration_s for a, b in zip(onsets, offsets, strict=True))
    for item in world.images:
        sp = world.taxonomy[world.taxonomy.index(item.species)]
        assert item.path == f"images/{sp.code}/{item.id}.png"
        assert (item.source, item.licence, item.photographer) == ("demo", "CC0", "birdbridge demo")
        with Image.open(root / item.path) as image:
            assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 64)
    meta = json.loads((root / "world.json").read_text())
    assert meta["config"]["seed"] == 7 and len(meta["species"]) == 8
    assert meta["species"][0]["acoustic"]["pitch_hz"] == world.acoustic[0, 0]


def test_world_load_round_trips(world: World) -> None:
    loaded = World.load(world.root)
    assert loaded.config == TINY and loaded.taxonomy == world.taxonomy
    assert loaded.audio == world.audio and loaded.images == world.images
    assert np.array_equal(loaded.acoustic, world.acoustic) and np.array_equal(loaded.visual, world.visual)
    sp = world.taxonomy[3]
    assert loaded.acoustic_traits(sp.code) == world.acoustic_traits(3)
    assert loaded.visual_traits(sp.common_name) == VisualTraits.from_vector(world.visual[3])


def test_world_loads_as_a_project_dataset(world: World) -> None:
    from birdbridge.datasets import load_dataset

    dataset = load_dataset(world.root)
    assert dataset.name == "demo-world" and dataset.taxonomy == world.taxonomy
    assert [(a.id, a.species, a.split, a.duration_s) for a in dataset.audio] == [
        (a.id, a.species, a.split, a.duration_s) for a in world.audio
    ]
    assert [Path(a.path).resolve() for a in dataset.audio] == [world.path(a).resolve() for a in world.audio]
    assert [(i.id, i.species, i.split, i.licence) for i in dataset.images] == [
        (i.id, i.species, i.split, i.licence) for i in world.images
    ]


def test_splits_are_stratified(world: World) -> None:
    for items in (world.audio, world.images):
        for sp in world.taxonomy:
            splits = [i.split for i in items if i.species == sp.key]
            assert sorted(splits) == ["test"] + ["train"] * 3  # round(4 * 0.3) == 1
    assert len(world.audio_items("test")) == 8 and len(world.image_items("train")) == 24


def test_world_is_deterministic_and_parallel_safe(world: World, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", TINY, workers=2)
    assert _files(again.root) == _files(world.root)
    other = generate_world(tmp_path / "other", dataclasses.replace(TINY, seed=8, images_per_species=0))
    assert other.taxonomy != world.taxonomy and not other.images


def test_visual_seed_changes_looks_only(world: World, tmp_path: Path) -> None:
    redressed = generate_world(tmp_path / "redressed", dataclasses.replace(TINY, visual_seed=99))
    assert np.array_equal(redressed.acoustic, world.acoustic)
    assert not np.allclose(redressed.visual, world.visual)
    old, new = _files(world.root), _files(redressed.root)
    assert all(old[p] == new[p] for p in old if p.startswith("audio"))
    assert all(old[p] != new[p] for p in old if p.startswith("images/"))


def test_world_replaces_only_worlds(tmp_path: Path) -> None:
    small = dataclasses.replace(TINY, n_orders=1, genera_per_family=1, recordings_per_species=2, images_per_species=2)
    progress: list[tuple[int, int]] = []
    first = generate_world(tmp_path / "w", small, progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (8, 8)
    (first.root / "stale.txt").write_text("left over")
    generate_world(tmp_path / "w", small)
    assert not (tmp_path / "w" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["w"]  # no temporary folders left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(BirdbridgeError, match="refusing"):
        generate_world(tmp_path / "notes", small)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
    with pytest.raises(InputError, match=r"world\.json"):
        World.load(tmp_path / "notes")
    with pytest.raises(ValueError):
        WorldConfig(test_fraction=1.0)

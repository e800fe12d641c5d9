"""The demo world's soundscapes and background-only recordings (demo.backgrounds, demo.soundscapes)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from birdbridge.audio.io import read_audio
from birdbridge.demo.backgrounds import BACKGROUND_CLASSES, FLOOR_DB, LEVEL_DB, background_clip, synth_background
from birdbridge.demo.calls import render_call, render_call_box
from birdbridge.demo.names import generate_taxonomy
from birdbridge.demo.soundscapes import WINDOW_S, render_soundscape
from birdbridge.demo.traits import AcousticTraits, sample_acoustic
from birdbridge.demo.world import BACKGROUND_COLUMNS, SOUNDSCAPE_COLUMNS, World, WorldConfig, generate_world
from birdbridge.errors import InputError

SR = 16000
BASE = WorldConfig(
    n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2,
    recordings_per_species=2, images_per_species=1, clip_s=(1.0, 1.5), seed=5,
)  # fmt: skip
SCAPES = dataclasses.replace(BASE, soundscapes=4, soundscape_s=60.0, background_per_class=3)
RAVEN_HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                "Species"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return generate_world(tmp_path_factory.mktemp("scapes") / "world", SCAPES)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _raven(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        assert reader.fieldnames == RAVEN_HEADER
        return list(reader)


def _traits(seed: int = 0) -> tuple[list[str], list[AcousticTraits]]:
    tax = generate_taxonomy(2, 1, 2, 2, seed=seed)
    return list(tax.keys), [AcousticTraits.from_vector(row) for row in sample_acoustic(tax, seed)]


# ------------------------------------------------------------------------------------ backgrounds


def _features(x: np.ndarray) -> dict[str, float]:
    """Spectral centroid (Hz), spread / centroid, flatness, the envelope's variation (10 ms steps) and the 2-8 Hz
    share of its modulation, level (dBFS)."""
    x = x.astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    centroid = float((power * freqs).sum() / power.sum())
    spread = float(np.sqrt((power * (freqs - centroid) ** 2).sum() / power.sum()))
    frames = np.abs(np.fft.rfft(x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512), axis=1)) ** 2 + 1e-20
    flatness = float(np.mean(np.exp(np.mean(np.log(frames), 1)) / np.mean(frames, 1)))
    envelope = np.sqrt((x[: len(x) // 160 * 160].reshape(-1, 160) ** 2).mean(1))  # 10 ms steps
    modulation = np.abs(np.fft.rfft(envelope - envelope.mean())) ** 2
    mod_freqs = np.fft.rfftfreq(len(envelope), 0.01)
    syllables = modulation[(mod_freqs >= 2) & (mod_freqs < 8)].sum() / modulation[
        (mod_freqs >= 0.5) & (mod_freqs < 50)].sum()
    return {"centroid": centroid, "relative_spread": spread / centroid, "flatness": flatness,
            "envelope_cv": float(envelope.std() / envelope.mean()), "syllable_rhythm": float(syllables),
            "level_db": float(10 * np.log10(np.mean(x**2)))}


def test_background_generators_keep_level_length_and_seed() -> None:
    for label in BACKGROUND_CLASSES:
        x = synth_background(label, 3 * SR + 7, SR, np.random.default_rng(0), -30.0)
        assert x.dtype == np.float32 and x.shape == (3 * SR + 7,) and np.isfinite(x).all()
        assert 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(-30.0, abs=0.01)
        assert np.array_equal(x, synth_background(label, 3 * SR + 7, SR, np.random.default_rng(0), -30.0))
        assert not np.array_equal(x, synth_background(label, 3 * SR + 7, SR, np.random.default_rng(1), -30.0))
        other_rate = synth_background(label, 22050, 22050, np.random.default_rng(0), -30.0)
        assert other_rate.shape == (22050,) and np.isfinite(other_rate).all()
    with pytest.raises(ValueError, match="unknown background class 'thunder'"):
        synth_background("thunder", 100, SR, np.random.default_rng(0))


def test_background_classes_have_their_own_signatures() -> None:
    feats = {label: [_features(synth_background(label, 4 * SR, SR, np.random.default_rng(s))) for s in range(6)]
             for label in BACKGROUND_CLASSES}  # fmt: skip

    def values(label: str, key: str) -> list[float]:
        return [f[key] for f in feats[label]]

    def others(label: str, key: str) -> list[float]:
        return [v for k in BACKGROUND_CLASSES if k != label for v in values(k, key)]

    # wind: the lowest centroid on every draw; insects: the highest, in a narrow band
    assert max(values("wind", "centroid")) < min(500, *others("wind", "centroid"))
    assert min(values("insects", "centroid")) > max(others("insects", "centroid"))
    assert max(values("insects", "relative_spread")) < 0.2
    assert np.mean(values("insects", "relative_spread")) < 0.5 * min(
        np.mean(values(k, "relative_spread")) for k in BACKGROUND_CLASSES if k != "insects")
    # rain: broadband, far flatter than everything but the noise floor
    assert min(values("rain", "flatness")) > 0.4
    assert all(np.mean(values("rain", "flatness")) > 5 * np.mean(values(k, "flatness"))
               for k in BACKGROUND_CLASSES if k not in ("rain", "silence"))
    # voices: syllables come and go (a deep envelope with a 2-8 Hz rhythm); water runs on steadily
    assert min(values("voices", "envelope_cv")) > 0.5 > max(values("water", "envelope_cv"))
    assert min(values("voices", "syllable_rhythm")) > 0.2
    # silence: by far the quietest at the classes' usual levels; distant voices quieter than other sounds
    assert max(values("silence", "level_db")) < min(others("silence", "level_db")) - 10
    assert all(LEVEL_DB["voices"][1] <= LEVEL_DB[k][1] for k in BACKGROUND_CLASSES if k != "silence")

    # and a nearest-centroid rule on these statistics tells the classes apart on fresh draws
    def vector(f: dict[str, float]) -> np.ndarray:
        return np.array([np.log(f["centroid"]), np.log(f["relative_spread"]), np.log(f["flatness"]),
                         f["envelope_cv"], f["syllable_rhythm"], f["level_db"] / 10])

    centres = {label: np.mean([vector(f) for f in fs], axis=0) for label, fs in feats.items()}
    scale = np.std(list(centres.values()), axis=0)
    hits = []
    for label in BACKGROUND_CLASSES:
        for seed in range(100, 105):
            v = vector(_features(synth_background(label, 4 * SR, SR, np.random.default_rng(seed))))
            hits.append(label == min(centres, key=lambda k: float(np.sum(((v - centres[k]) / scale) ** 2))))
    assert np.mean(hits) >= 0.9


def test_background_clip_sits_on_the_noise_floor() -> None:
    quiet = background_clip("silence", 2 * SR, SR, np.random.default_rng(0)).astype(np.float64)
    level = 10 * np.log10(np.mean(quiet**2))
    assert FLOOR_DB - 0.5 < level < LEVEL_DB["silence"][1] + 3.1
    loud = background_clip("wind", 2 * SR, SR, np.random.default_rng(0))
    assert loud.dtype == np.float32 and np.abs(loud).max() <= 0.95 + 1e-6


# ------------------------------------------------------------------------------------- soundscapes


def test_call_boxes_hold_their_calls() -> None:
    shares, widths = [], []
    for seed in range(3):
        tax = generate_taxonomy(3, 2, 2, 2, seed=seed)
        for row in sample_acoustic(tax, seed):
            x, low, high = render_call_box(AcousticTraits.from_vector(row), np.random.default_rng(seed), SR)
            power = np.abs(np.fft.rfft(x)) ** 2
            freqs = np.fft.rfftfreq(len(x), 1 / SR)
            shares.append(power[(freqs >= low) & (freqs <= high)].sum() / power.sum())
            widths.append(high - low)
    assert min(shares) > 0.8 and np.mean(shares) > 0.95  # the box holds the call's energy
    assert np.median(widths) < SR / 4  # and is no wider than it needs to be
    # the same generator state gives the same call as render_call
    traits = AcousticTraits.from_vector(sample_acoustic(generate_taxonomy(1, 1, 1, 2, seed=0), 0)[0])
    boxed = render_call_box(traits, np.random.default_rng(1), SR, pitch_factor=1.1, max_s=0.2)[0]
    assert np.array_equal(boxed, render_call(traits, np.random.default_rng(1), SR, pitch_factor=1.1, max_s=0.2))


def test_world_files_descriptor_and_manifests(world: World) -> None:
    root = world.root
    assert {"soundscapes", "background", "background.csv"} <= {p.name for p in root.iterdir()}
    assert yaml.safe_load((root / "soundscapes" / "dataset.yaml").read_text()) == {
        "type": "soundscape", "name": "demo-soundscapes", "recordings": "soundscapes.csv", "annotations": ".",
        "annotation_format": "raven", "species_column": "Species", "taxonomy": "../taxonomy.csv", "window_s": 5,
        "hop_s": 5, "min_overlap_s": 0.5, "min_overlap_fraction": 1.0,
    }  # fmt: skip
    with open(root / "soundscapes" / "soundscapes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SOUNDSCAPE_COLUMNS and len(rows) == 4
    assert sorted(r["split"] for r in rows) == ["test", "test", "test", "valid"]  # round(4 * 0.3) to calibrate
    for row, item in zip(rows, world.soundscapes, strict=True):
        assert row["path"] == f"{row['id']}.wav" and item.path == f"soundscapes/{row['path']}"
        info = sf.info(root / item.path)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", 60 * SR)
        assert float(row["duration_s"]) == item.duration_s == 60.0
        assert (root / "soundscapes" / f"{row['id']}.Table.1.selections.txt").is_file()
        assert (root / "soundscapes" / f"{row['id']}.truth.json").is_file()
    assert len(world.soundscape_items("valid")) == 1 and len(world.soundscape_items()) == 4
    with open(root / "background.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == BACKGROUND_COLUMNS and len(rows) == 3 * len(BACKGROUND_CLASSES)
    for label in BACKGROUND_CLASSES:
        mine = [r for r in rows if r["label"] == label]
        assert [r["id"] for r in mine] == [f"{label}-bg{j:03d}" for j in range(3)]
        assert sorted(r["split"] for r in mine) == ["test", "train", "train"]
        assert len(world.background_items("train", label)) == 2
        for r in mine:
            assert r["path"] == f"background/{label}/{r['id']}.wav"
            x = read_audio(root / r["path"])
            assert len(x) / SR == pytest.approx(float(r["duration_s"])) and 1.0 <= float(r["duration_s"]) <= 1.5
    meta = json.loads((root / "world.json").read_text())["config"]
    assert (meta["soundscapes"], meta["soundscape_s"], meta["background_per_class"]) == (4, 60.0, 3)
    assert meta["soundscape_bird_free"] == [0.5, 0.7]


def test_raven_tables_match_the_truth_and_the_recordings(world: World) -> None:
    for item in world.soundscapes:
        rows = _raven(world.root / item.selections_path)
        assert rows and len(rows) == len(item.calls)
        assert [r["Selection"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
        assert {(r["View"], r["Channel"]) for r in rows} == {("Spectrogram 1", "1")}
        begins = [float(r["Begin Time (s)"]) for r in rows]
        assert begins == sorted(begins)
        for r, call in zip(rows, item.calls, strict=True):
            begin, end = float(r["Begin Time (s)"]), float(r["End Time (s)"])
            low, high = float(r["Low Freq (Hz)"]), float(r["High Freq (Hz)"])
            assert (begin, end, low, high, r["Species"]) == (call.begin_s, call.end_s, call.low_hz, call.high_hz,
                                                             call.species)
            assert 0 <= begin < end <= item.duration_s and 0 <= low < high <= SR / 2
            assert r["Species"] in world.taxonomy.keys and r["Species"] in item.community
        truth = json.loads((world.root / item.truth_path).read_text())
        assert [c["selection"] for c in truth["calls"]] == list(range(1, len(rows) + 1))
        assert all(0.0 <= c["snr_db"] <= 20.0 for c in truth["calls"])  # the world's snr_db range


def _band_power(x: np.ndarray, a: float, b: float, low: float, high: float) -> float:
    seg = x[round(a * SR) : round(b * SR)].astype(np.float64)
    power = np.abs(np.fft.rfft(seg * np.hanning(len(seg)))) ** 2
    freqs = np.fft.rfftfreq(len(seg), 1 / SR)
    return float(power[(freqs >= low) & (freqs <= high)].sum() / len(seg))


def test_calls_are_where_the_tables_say(world: World) -> None:
    ratios = []
    for item in world.soundscapes:
        x = read_audio(world.path(item))
        for call in item.calls:
            before = (call.begin_s - 1.0, call.begin_s)
            if before[0] < 0 or any(o.end_s > before[0] and o.begin_s < before[1] for o in item.calls if o != call):
                continue  # the second before must hold background only
            inside = _band_power(x, call.begin_s, call.end_s, call.low_hz, call.high_hz)
            ratios.append(inside / _band_power(x, *before, call.low_hz, call.high_hz))
    db = 10 * np.log10(ratios)
    assert len(db) >= 10
    assert np.mean(db) > 6 and np.mean(db > 1.0) > 0.85


def test_bird_free_share_and_windows(world: World) -> None:
    for item in world.soundscapes:
        n = round(item.duration_s / WINDOW_S)
        windows = item.windows()
        assert len(windows) == n and [w.start_s for w in windows] == [k * WINDOW_S for k in range(n)]
        free = [not w.species for w in windows]
        assert 0.5 <= np.mean(free) <= 0.7
        for k, w in enumerate(windows):
            a, b = k * WINDOW_S, (k + 1) * WINDOW_S
            touching = [c for c in item.calls if c.end_s > a and c.begin_s < b]
            whole = [c for c in item.calls if a <= c.begin_s and c.end_s <= b]
            if free[k]:
                assert not touching  # not even a sliver of a call: bird-free under any overlap rule
            else:
                assert whole  # a window with birds holds at least one whole call
                assert w.species >= {c.species for c in whole}
    # another range, on the renderer directly
    names, traits = _traits()
    scape = render_soundscape(names, traits, np.random.default_rng(3), SR, 100.0, bird_free=(0.85, 0.9))
    windows = [not any(c.end_s > k * 5 and c.begin_s < (k + 1) * 5 for c in scape.calls) for k in range(20)]
    assert np.mean(windows) in (0.85, 0.9)
    with pytest.raises(ValueError, match="whole number"):
        render_soundscape(names, traits, np.random.default_rng(3), SR, 12.0)


def test_several_species_call_at_once(world: World) -> None:
    overlaps = 0
    for item in world.soundscapes:
        calls = item.calls
        overlaps += sum(1 for i, a in enumerate(calls) for b in calls[i + 1 :]
                        if a.species != b.species and min(a.end_s, b.end_s) > max(a.begin_s, b.begin_s))
        assert len(item.community) >= 3 and {c.species for c in calls} <= set(item.community)
    assert overlaps >= 2
    assert len({c.species for s in world.soundscapes for c in s.calls}) >= 4


def test_backgrounds_change_along_the_recording(world: World) -> None:
    labels = set()
    for item in world.soundscapes:
        segs = item.backgrounds
        assert segs[0].start_s == 0 and segs[-1].end_s == item.duration_s
        assert all(a.end_s == b.start_s and a.label != b.label for a, b in itertools.pairwise(segs))
        assert all(s.end_s - s.start_s >= 10.0 for s in segs[:-1])
        labels.update(s.label for s in segs)
        assert FLOOR_DB - 20 < item.floor_db <= FLOOR_DB
        x = read_audio(world.path(item)).astype(np.float64)
        for seg in segs:  # bird-free windows clear of the cross-fades hold the segment's sound (and the floor)
            clear = [w for w in item.windows() if not w.species and seg.start_s + 1 <= w.start_s
                     and w.end_s <= seg.end_s - 1]
            assert all(w.background == seg.label for w in clear)
            if not clear:
                continue
            power = [np.mean(x[round(w.start_s * SR) : round(w.end_s * SR)] ** 2) for w in clear]
            level = 10 * np.log10(np.mean(power))
            expected = 10 * np.log10(10 ** (seg.level_db / 10) + 10 ** (item.floor_db / 10))
            steady = seg.label in ("silence", "rain", "water", "insects", "frogs")  # wind gusts, engines pass
            assert level == pytest.approx(expected, abs=2.0 if steady else 5.0), (item.id, seg)
    assert len(labels) >= 4
    assert any(len(s.backgrounds) >= 2 for s in world.soundscapes)


def test_world_load_round_trips_and_checks_files(world: World, tmp_path: Path) -> None:
    loaded = World.load(world.root)
    assert loaded.config == SCAPES
    assert loaded.soundscapes == world.soundscapes and loaded.background == world.background
    copy = generate_world(tmp_path / "copy", SCAPES)
    (copy.root / copy.soundscapes[0].selections_path).unlink()
    with pytest.raises(InputError, match=r"selections\.txt"):
        World.load(copy.root)


def test_soundscapes_are_deterministic_and_parallel_safe(world: World, tmp_path: Path) -> None:
    again = generate_world(tmp_path / "again", SCAPES, workers=2)
    assert _files(again.root) == _files(world.root)
    other = generate_world(tmp_path / "other",
                           dataclasses.replace(SCAPES, seed=6, soundscapes=1, background_per_class=1))
    assert _files(other.root)["soundscapes/soundscape000.wav"] != _files(world.root)["soundscapes/soundscape000.wav"]
    assert _files(other.root)["background/wind/wind-bg000.wav"] != _files(world.root)["background/wind/wind-bg000.wav"]


def test_options_off_leave_the_world_as_it_was(world: World, tmp_path: Path) -> None:
    plain = generate_world(tmp_path / "plain", BASE)
    off = _files(plain.root)
    on = _files(world.root)
    assert not plain.soundscapes and not plain.background
    assert not any(p.startswith(("soundscapes", "background")) for p in off)
    assert all(on[p] == off[p] for p in off if p != "world.json")
    config_off = json.loads(off["world.json"])["config"]
    config_on = json.loads(on["world.json"])["config"]
    assert not {"soundscapes", "soundscape_s", "soundscape_bird_free", "background_per_class"} & set(config_off)
    assert {k: v for k, v in config_on.items() if k in config_off} == config_off
    # the fields are left out only when their count is 0
    only_clips = generate_world(tmp_path / "clips", dataclasses.replace(BASE, background_per_class=1))
    config = json.loads((only_clips.root / "world.json").read_text())["config"]
    assert config["background_per_class"] == 1 and "soundscape_s" not in config
    assert not (only_clips.root / "soundscapes").exists()


def test_config_checks_the_soundscape_fields() -> None:
    with pytest.raises(ValueError, match="whole number of 5 s windows"):
        WorldConfig(soundscape_s=12.0)
    with pytest.raises(ValueError, match="soundscape_bird_free"):
        WorldConfig(soundscape_bird_free=(0.8, 0.2))
    with pytest.raises(ValueError, match="soundscapes must be 0 or more"):
        WorldConfig(soundscapes=-1)
    assert WorldConfig.from_dict({"soundscape_bird_free": [0.4, 0.6]}).soundscape_bird_free == (0.4, 0.6)

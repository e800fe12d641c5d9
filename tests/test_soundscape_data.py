"""Soundscape datasets: Raven / BirdNET / CSV annotations, failures by file and line, labelled windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_fixtures import write_wav
from birdbridge.audio.windows import WindowSpec, iter_windows, window_starts
from birdbridge.datasets import load_dataset, load_soundscapes, read_soundscapes
from birdbridge.errors import BirdbridgeError, InputError
from dataset_fixtures import line_of, write_csv, write_taxonomy

SR = 8000
MALLARD, WOODPECKER, JAY, CHICKADEE = "Anas platyrhynchos", "Dryobates pubescens", "Cyanocitta cristata", \
    "Poecile atricapillus"
RAVEN_HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
                "Species"]


def write_raven(path: Path, rows: list[tuple], header: list[str] = RAVEN_HEADER, views: bool = True) -> Path:
    """A Raven selection table; with ``views`` each selection also gets the Waveform row Raven exports."""
    lines = ["\t".join(header)]
    for i, row in enumerate(rows, start=1):
        for view in ("Spectrogram 1", "Waveform 1") if views else ("Spectrogram 1",):
            lines.append("\t".join(str(v) for v in (i, view, 1, *row)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def world(tmp_path) -> Path:
    """soundscapes/site1/{a (23 s), b (12 s)}.wav and site2/c.wav (7.4 s), Raven tables beside them."""
    root = tmp_path / "world"
    write_taxonomy(root / "taxonomy.csv", 5)
    sounds = root / "soundscapes"
    for rel, seconds in (("site1/a.wav", 23.0), ("site1/b.wav", 12.0), ("site2/c.wav", 7.4)):
        write_wav(sounds / rel, seconds, SR)
    write_raven(sounds / "site1/a.Table.1.selections.txt", [
        (1.0, 3.0, 1000, 4000, MALLARD),  # window 0
        (4.8, 7.0, 2000, 5000, WOODPECKER),  # 0.2 s in window 0 (too little), 2 s in window 1
        (9.8, 10.1, 3000, 6000, JAY),  # a 0.3 s call: 0.2 s in window 1 (enough: half the call), 0.1 s in 2
        (6.0, 8.0, 1500, 3000, MALLARD),  # window 1 holds two species
        (21.0, 23.1, 1000, 2000, CHICKADEE),  # the short last window (20–23 s); overruns the end by 0.1 s
    ])  # windows 2 (10–15) and 3 (15–20) are bird-free
    write_raven(sounds / "site1/b.Table.1.selections.txt", [(2.0, 9.0, 1000, 5000, JAY)])
    write_raven(sounds / "site2/c.Table.1.selections.txt", [])
    return root


def by_window(windows) -> dict[tuple[str, float], set[str]]:
    return {(w.recording.id, w.start_s): set(w.labels) for w in windows}


def test_raven_tables_beside_recordings(world):
    ds = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv")
    assert ds.failures == []
    assert [r.id for r in ds.recordings] == ["site1/a.wav", "site1/b.wav", "site2/c.wav"]
    assert [r.duration_s for r in ds.recordings] == [23.0, 12.0, 7.4]
    assert len(ds.annotations) == 6  # the Waveform duplicate of each selection is dropped
    first = ds.annotations[0]
    assert (first.recording, first.start_s, first.end_s, first.species, first.low_hz, first.high_hz) == (
        "site1/a.wav", 1.0, 3.0, MALLARD, 1000.0, 4000.0)
    assert ds.annotations[4].end_s == 23.0  # clipped to the recording
    windows = ds.windows()
    assert by_window(windows) == {
        ("site1/a.wav", 0.0): {MALLARD},
        ("site1/a.wav", 5.0): {WOODPECKER, JAY, MALLARD},
        ("site1/a.wav", 10.0): set(),
        ("site1/a.wav", 15.0): set(),
        ("site1/a.wav", 20.0): {CHICKADEE},
        ("site1/b.wav", 0.0): {JAY},
        ("site1/b.wav", 5.0): {JAY},
        ("site1/b.wav", 10.0): set(),
        ("site2/c.wav", 0.0): set(),
        ("site2/c.wav", 5.0): set(),
    }
    assert windows[4].end_s == 23.0 and windows[9].end_s == pytest.approx(7.4)
    matrix = ds.label_matrix()
    assert matrix.shape == (10, 5) and matrix.dtype == bool
    keys = ds.taxonomy.keys
    assert [{keys[j] for j in np.flatnonzero(row)} for row in matrix] == [set(w.labels) for w in windows]
    np.testing.assert_array_equal(windows.recording_index, [0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    assert "bird-free" in ds.summary() and "3 recordings" in repr(ds)


def test_windows_line_up_with_the_embedding_windows(world):
    ds = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv")
    for window_s, hop_s in ((5.0, 5.0), (3.0, 1.5), (10.0, 5.0)):
        spec = WindowSpec(window_s, hop_s)  # embed_audio_windows' rule, at the model's 48 kHz
        windows = ds.windows(window_s, hop_s)
        names, starts, ends = [], [], []
        for rec in ds.recordings:
            assert windows.start_s[windows.recording_index == ds.recordings.index(rec)].tolist() == pytest.approx(
                list(window_starts(rec.duration_s, spec)))
            for w in iter_windows(rec.path, 48_000, spec):
                names.append(w.source)
                starts.append(w.start_s)
                ends.append(w.end_s)
        np.testing.assert_allclose(windows.end_s, ends, atol=1e-6)
        np.testing.assert_array_equal(windows.locate(names, starts), np.arange(len(windows)))
    windows = ds.windows()
    found = windows.locate([str(world / "soundscapes/site1/b.wav"), "elsewhere.wav", str(ds.recordings[0].path)],
                           [5.0004, 0.0, 2.5])
    np.testing.assert_array_equal(found, [6, -1, -1])  # 2.5 s is no window start


def test_take_follows_embedding_rows(world):
    windows = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv").windows()
    order = [6, 1, 1, 3, 0]
    taken = windows.take(order)
    assert list(taken) == [windows[i] for i in order]
    np.testing.assert_array_equal(taken.label_matrix(), windows.label_matrix()[order])
    assert len(windows.take([])) == 0
    with pytest.raises(BirdbridgeError, match="name no window"):
        windows.take([0, -1])


def test_overlap_rule_settings(world):
    ds = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv")
    any_overlap = by_window(ds.windows(min_overlap_s=0))  # BirdSet's rule: every touched window
    assert any_overlap[("site1/a.wav", 0.0)] == {MALLARD, WOODPECKER}
    assert any_overlap[("site1/a.wav", 10.0)] == {JAY}
    seconds_only = by_window(read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv",
                                              min_overlap_fraction=None).windows())
    assert seconds_only[("site1/a.wav", 5.0)] == {WOODPECKER, MALLARD}  # the 0.3 s call has 0.2 s in it: too little
    strict = by_window(ds.windows(min_overlap_s=2.0, min_overlap_fraction=1.0))
    assert strict[("site1/a.wav", 5.0)] == {WOODPECKER, MALLARD}  # the 0.3 s call would have to lie wholly inside
    assert strict[("site1/a.wav", 0.0)] == {MALLARD}


def test_bad_rows_are_reported_by_file_and_line_and_the_rest_is_used(world):
    table = world / "soundscapes/site1/b.Table.1.selections.txt"
    write_raven(table, [
        (2.0, 9.0, 1000, 5000, JAY),
        (6.0, 4.0, 1000, 5000, JAY),  # ends before it starts
        (10.0, 14.0, 1000, 5000, JAY),  # past the end (12 s)
        (1.0, 2.0, 1000, 5000, "Turdus migratorius"),  # not in the taxonomy
        ("x", 2.0, 1000, 5000, JAY),  # not a number
        (3.0, 4.0, 1000, 5000, CHICKADEE),
    ])
    ds = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv")
    assert [f.source for f in ds.failures] == [str(table)] * 4
    messages = [f.message for f in ds.failures]
    assert messages[0].startswith(f"line {line_of(table, '6.0')}: ") and "before it starts" in messages[0]
    assert messages[1].startswith(f"line {line_of(table, '14.0')}: ") and "past the end" in messages[1]
    assert messages[2].startswith(f"line {line_of(table, 'Turdus')}: ") and "Turdus migratorius" in messages[2]
    assert messages[3].startswith(f"line {line_of(table, 'x')}: ") and "not a number" in messages[3]
    assert by_window(ds.windows())[("site1/b.wav", 0.0)] == {JAY, CHICKADEE}  # good rows of the table are kept
    assert len(ds.recordings) == 3  # the recording stays: its labels are known apart from the reported rows


def test_tables_and_recordings_that_cannot_be_used_are_left_out_and_listed(world):
    sounds = world / "soundscapes"
    (sounds / "site2/c.Table.1.selections.txt").unlink()  # c has no table
    (sounds / "site1/b.Table.1.selections.txt").write_text("Selection\tSpecies\n1\tx\n")  # no time columns
    write_raven(sounds / "site1/orphan.selections.txt", [(1.0, 2.0, 0, 100, JAY)])  # matches no recording
    (sounds / "site2/d.wav").write_bytes(b"not audio")
    write_raven(sounds / "site2/d.Table.1.selections.txt", [])
    (sounds / "site2/gone.wav").symlink_to(sounds / "site2/nowhere.wav")  # broken links: reported, not skipped
    (sounds / "site2/gone.Table.1.selections.txt").symlink_to(sounds / "site2/nowhere.txt")
    ds = read_soundscapes(sounds, sounds, world / "taxonomy.csv")
    assert [r.id for r in ds.recordings] == ["site1/a.wav"]
    failures = {Path(f.source).name: f.message for f in ds.failures}
    assert set(failures) == {"d.wav", "b.Table.1.selections.txt", "orphan.selections.txt", "c.wav", "gone.wav",
                             "gone.Table.1.selections.txt"}
    assert "broken link" in failures["gone.wav"] and "broken link" in failures["gone.Table.1.selections.txt"]
    assert "left out" in failures["d.wav"]
    assert "missing columns" in failures["b.Table.1.selections.txt"]
    assert failures["b.Table.1.selections.txt"].endswith("the table is skipped")
    assert "no recording found" in failures["orphan.selections.txt"]
    assert "no annotation table" in failures["c.wav"]
    assert {a.recording for a in ds.annotations} == {"site1/a.wav"}


def test_birdnet_raven_tables_use_begin_path_skip_nocall_and_apply_a_confidence_floor(world):
    sounds = world / "soundscapes"
    for table in sounds.rglob("*.txt"):
        table.unlink()
    header = ["Begin Path", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)", "File Offset (s)",
              "Common Name", "Species Code", "Confidence"]
    out = world / "birdnet_out"
    write_raven(out / "combined.BirdNET.selection.table.txt", [
        (r"D:\field\site1\a.wav", 0.0, 3.0, 0, 15000, 0.0, "Mallard", "mallar3", 0.91),
        (r"D:\field\site1\a.wav", 3.0, 6.0, 0, 15000, 3.0, "nocall", "nocall", 1.0),
        ("/mnt/old/site1/b.wav", 15.0, 18.0, 0, 15000, 3.0, "Blue Jay", "blujay", 0.4),  # offset: 3–6 s of b
        ("/mnt/old/site1/b.wav", 21.0, 24.0, 0, 15000, 9.0, "Blue Jay", "blujay", 0.05),  # below the floor
        ("/mnt/old/site2/c.wav", 0.0, 3.0, 0, 15000, 0.0, "Robin", "amerob", 0.8),  # unknown species
        ("/mnt/old/site2/zz.wav", 0.0, 3.0, 0, 15000, 0.0, "Mallard", "mallar3", 0.8),  # no such recording
    ], header=["Selection", "View", "Channel", *header], views=False)
    ds = read_soundscapes(sounds, out, world / "taxonomy.csv", min_confidence=0.1)
    assert [r.id for r in ds.recordings] == ["site1/a.wav", "site1/b.wav", "site2/c.wav"]
    assert [(a.recording, a.start_s, a.end_s, a.species) for a in ds.annotations] == [
        ("site1/a.wav", 0.0, 3.0, MALLARD), ("site1/b.wav", 3.0, 6.0, JAY)]
    assert len(ds.failures) == 2
    assert "'amerob' / 'Robin' is not in the taxonomy" in ds.failures[0].message
    assert "'/mnt/old/site2/zz.wav' is not among the recordings" in ds.failures[1].message


def test_birdnet_result_csv_with_file_column(world):
    csv_path = write_csv(world / "results.csv", ["Start (s)", "End (s)", "Scientific name", "Common name",
                                                 "Confidence", "File"], [
        [0.0, 3.0, MALLARD, "Mallard", 0.9, "/data/site1/a.wav"],
        [6.0, 9.0, CHICKADEE, "Black-capped Chickadee", 0.2, "C:\\data\\site1\\a.wav"],
        [3.0, 6.0, JAY, "Blue Jay", 0.7, "b.wav"],
    ])
    ds = read_soundscapes(world / "soundscapes", csv_path, world / "taxonomy.csv", annotation_format="birdnet",
                          min_confidence=0.5)
    assert ds.failures == []
    labels = by_window(ds.windows())
    assert labels[("site1/a.wav", 0.0)] == {MALLARD} and labels[("site1/a.wav", 5.0)] == set()
    assert labels[("site1/b.wav", 0.0)] == {JAY} and labels[("site1/b.wav", 5.0)] == {JAY}
    assert labels[("site2/c.wav", 0.0)] == set()  # one annotation file: recordings it does not name are bird-free
    assert len(ds.recordings) == 3


def test_plain_csv_by_relative_path_common_name_or_code(world):
    csv_path = write_csv(world / "labels.csv", ["file", "start", "end", "species", "observer"], [
        ["site1/a.wav", 0.5, 2.0, "Mallard", "kb"],
        ["site2/c.wav", 6.0, 7.4, "dowwoo", "kb"],
        ["site1/a.wav", 22.0, 30.0, "Mallard", "kb"],  # past the end
    ])
    ds = read_soundscapes(world / "soundscapes", csv_path, world / "taxonomy.csv", annotation_format="csv")
    assert [(a.recording, a.species) for a in ds.annotations] == [("site1/a.wav", MALLARD),
                                                                   ("site2/c.wav", WOODPECKER)]
    assert ds.failures[0].source == str(csv_path) and ds.failures[0].message.startswith("line 4: ")
    assert by_window(ds.windows())[("site2/c.wav", 5.0)] == {WOODPECKER}
    (world / "nofile.csv").write_text("start,end,species\n1,2,Mallard\n")
    with pytest.raises(InputError, match="annotation_format"):
        read_soundscapes(world / "soundscapes", csv_path, world / "taxonomy.csv", annotation_format="xls")
    bad = read_soundscapes(world / "soundscapes", world / "nofile.csv", world / "taxonomy.csv", annotation_format="csv")
    assert "missing column 'file'" in bad.failures[0].message
    with pytest.raises(InputError, match="no such file or folder"):
        read_soundscapes(world / "soundscapes", world / "nowhere", world / "taxonomy.csv")
    (world / "empty").mkdir()
    with pytest.raises(InputError, match="contains no raven tables"):
        read_soundscapes(world / "soundscapes", world / "empty", world / "taxonomy.csv")


def test_species_column_setting(world):
    table = world / "soundscapes/site1/b.Table.1.selections.txt"
    write_raven(table, [(2.0, 9.0, 1000, 5000, "blujay", "Mallard")], header=[*RAVEN_HEADER[:-1], "Code", "Note"])
    ds = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv",
                          species_column="Code")
    assert [a.species for a in ds.annotations if a.recording == "site1/b.wav"] == [JAY]
    default = read_soundscapes(world / "soundscapes", world / "soundscapes", world / "taxonomy.csv")
    assert [(f.source, "no species column" in f.message) for f in default.failures] == [(str(table), True)]
    assert "site1/b.wav" not in {r.id for r in default.recordings}


# ------------------------------------------------------------------------------------------- descriptor


def test_dataset_yaml_descriptor(world):
    write_csv(world / "recordings.csv", ["path", "split", "site"], [
        ["soundscapes/site1/a.wav", "test", "north"], ["soundscapes/site2/c.wav", "test", "south"]])
    (world / "dataset.yaml").write_text(
        "type: soundscape\nname: demo-soundscapes\nrecordings: recordings.csv\nannotations: soundscapes\n"
        "annotation_format: raven\nspecies_column: Species\ntaxonomy: taxonomy.csv\n"
        "window_s: 5\nhop_s: 2.5\nmin_overlap_s: 0.5\n"
    )
    ds = load_soundscapes(world)
    assert ds.name == "demo-soundscapes" and ds.hop_s == 2.5
    assert [(r.id, r.split, r.site) for r in ds.recordings] == [
        ("soundscapes/site1/a.wav", "test", "north"), ("soundscapes/site2/c.wav", "test", "south")]
    assert len(ds.windows()) == 9 + 2  # a: 0, 2.5, …, 20 s; c: 0 and 2.5 s (which reaches the end)
    assert [Path(f.source).name for f in ds.failures] == ["b.Table.1.selections.txt"]  # b is not listed
    (world / "dataset.yaml").write_text("type: soundscape\nrecordings: recordings.csv\ntaxonomy: taxonomy.csv\n")
    tables_beside = load_soundscapes(world)  # annotations: the YAML's folder, searched recursively
    assert tables_beside.annotations == ds.annotations and tables_beside.name == "world"

    with pytest.raises(InputError, match="soundscape dataset") as info:
        load_dataset(world)
    assert "load_soundscapes" in str(info.value)


@pytest.mark.parametrize(("yaml", "message"), [
    ("taxonomy: taxonomy.csv\nwindow_s: five\n", "'window_s' must be a number"),
    ("taxonomy: taxonomy.csv\nhop: 5\n", "unknown key 'hop'"),
    ("recordings: soundscapes\n", "needs a 'taxonomy'"),
    ("taxonomy: taxonomy.csv\nmin_overlap_fraction: 2\n", "min_overlap_fraction"),
    ("taxonomy: taxonomy.csv\nannotation_format: excel\n", "'annotation_format' is 'excel'"),
])
def test_descriptor_errors(world, yaml, message):
    (world / "dataset.yaml").write_text("type: soundscape\n" + yaml)
    with pytest.raises(InputError, match=message) as info:
        load_soundscapes(world)
    assert str(world / "dataset.yaml") in str(info.value)


def test_other_descriptors_are_not_soundscapes(world):
    (world / "dataset.yaml").write_text("type: manifest\naudio: audio.csv\n")
    with pytest.raises(InputError, match="not soundscapes"):
        load_soundscapes(world)


def test_the_demo_worlds_soundscapes_load_with_their_truth(tmp_path):
    """The demo world writes soundscapes in this loader's shape; its truth windows count a call when it overlaps
    a window by 0.5 s or wholly (min_overlap_fraction 1), and the default (half a short call) adds to them."""
    import dataclasses

    from birdbridge.demo.world import WorldConfig, generate_world

    config = WorldConfig(n_orders=2, families_per_order=1, genera_per_family=2, species_per_genus=2,
                         recordings_per_species=1, images_per_species=1, clip_s=(1.0, 1.5), seed=5)
    world = generate_world(tmp_path / "world", dataclasses.replace(config, soundscapes=3, soundscape_s=60.0))
    ds = load_soundscapes(world.root / "soundscapes")
    assert ds.failures == [] and ds.name == "demo-soundscapes"
    assert [(r.id, r.split) for r in ds.recordings] == [(Path(s.path).name, s.split) for s in world.soundscapes]
    assert len(ds.annotations) == sum(len(s.calls) for s in world.soundscapes)
    exact = by_window(ds.windows(min_overlap_fraction=1.0))
    default = by_window(ds.windows())
    truth = {(Path(s.path).name, w.start_s): set(w.species) for s in world.soundscapes for w in s.windows()}
    assert exact == truth and any(truth.values()) and not all(truth.values())
    assert all(default[k] >= labels for k, labels in truth.items())

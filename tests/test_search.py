"""`birdbridge search`: formats peers use, folder runs that resume, species lists, other queries, refusals."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from audio_fixtures import write_wav
from birdbridge.errors import BirdbridgeError
from birdbridge.gallery.build import build_gallery
from birdbridge.search import SearchEngine, search
from birdbridge.search.formats import CSV_COLUMNS, RAVEN_COLUMNS
from birdbridge.search.merge import merge_windows
from birdbridge.search.results import SpeciesHit, WindowResult
from cli_fixtures import run
from search_fixtures import distilled_world
from train_fixtures import SPECIES


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = distilled_world(tmp_path_factory.mktemp("search"))
    root = world["root"]
    recordings = root / "recordings"
    for i, (_, _, freq) in enumerate(SPECIES[:3]):
        write_wav(recordings / "site1" / f"rec{i}.wav", 2.5, freq=freq)
    (recordings / "site1" / "broken.wav").write_bytes(b"RIFF not really")
    return {**world, "recordings": recordings}


def test_python_api(world) -> None:
    """Softmax mode (plain retrieval): every window names its best species; see test_detections.py for the default."""
    results = search(world["recordings"] / "site1" / "rec0.wav", model=world["model"], gallery=world["gallery"],
                     top_k=3, n_images=2, min_score=0.0, hop_s=0.5, score="softmax").results
    assert len(results) == 1 and [w.start_s for w in results[0].windows] == [0.0, 0.5, 1.0, 1.5]
    window = results[0].windows[0]
    assert len(window.species) == 3 and len(window.images) == 2
    assert window.species[0].score >= window.species[1].score >= window.species[2].score
    assert abs(sum(h.score for h in window.species) - 1.0) < 1.0 + 1e-6  # probabilities (top 3 of 4)
    assert {h.key for h in window.species} <= {sci for sci, _, _ in SPECIES}
    assert window.species[0].common_name in {common for _, common, _ in SPECIES}


def test_csv_raven_json_parquet_per_file(world, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    for fmt in ("csv", "raven", "json", "parquet"):
        result = run(capsys, "search", world["recordings"], "--model", world["model"], "--gallery", world["gallery"],
                     "--format", fmt, "--output", out, "--min-score", "0", "--top-k", "2", "--images", "2",
                     "--score", "softmax")
        assert result.returncode == 0, result.stderr
        assert "broken.wav" in result.stderr  # reported at the end, the rest completed
    with open(out / "site1" / "rec0.birdbridge.results.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == [*CSV_COLUMNS, "Image 1", "Image 2"]
    assert len(rows) == 1 + 2 * 2  # 2 windows (2.5 s, 1 s windows, 0.5 s tail dropped) x top 2
    assert rows[1][5].endswith("rec0.wav") and 0 <= float(rows[1][4]) <= 1
    raven = (out / "site1" / "rec0.birdbridge.selection.table.txt").read_text().splitlines()
    assert raven[0].split("\t") == RAVEN_COLUMNS and raven[1].split("\t")[1] == "Spectrogram 1"
    data = json.loads((out / "site1" / "rec1.birdbridge.results.json").read_text())
    assert data[0]["windows"][0]["images"][0]["id"]
    table = pq.read_table(out / "site1" / "rec2.birdbridge.results.parquet")
    assert {"file", "start_s", "end_s", "species", "score", "images"} <= set(table.column_names)


def test_folder_runs_resume(world, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["search", world["recordings"], "--model", world["model"], "--gallery", world["gallery"], "--format",
            "csv", "--output", out]
    assert run(capsys, *args).returncode == 0
    (out / "site1" / "rec1.birdbridge.results.csv").unlink()
    before = (out / "site1" / "rec0.birdbridge.results.csv").stat().st_mtime_ns
    again = run(capsys, *args)
    assert again.returncode == 0 and "skipped 2 recordings already done" in again.stderr
    assert (out / "site1" / "rec1.birdbridge.results.csv").exists()
    assert (out / "site1" / "rec0.birdbridge.results.csv").stat().st_mtime_ns == before


def test_combined_output(world, tmp_path, capsys) -> None:
    target = tmp_path / "all.csv"
    result = run(capsys, "search", world["recordings"], "--model", world["model"], "--gallery", world["gallery"],
                 "--format", "csv", "--combined", "--output", target, "--min-score", "0", "--top-k", "1",
                 "--score", "softmax")
    assert result.returncode == 0, result.stderr
    with open(target) as fh:
        files = {row["File"] for row in csv.DictReader(fh)}
    assert {f.rsplit("/", 1)[-1] for f in files} == {"rec0.wav", "rec1.wav", "rec2.wav"}
    assert not (tmp_path / ".birdbridge-partial").exists()


def test_species_list_restricts(world, tmp_path, caplog, capsys) -> None:
    slist = tmp_path / "slist.txt"
    slist.write_text(f"{SPECIES[1][0]}_{SPECIES[1][1]}\n{SPECIES[2][0]}_{SPECIES[2][1]}\n")
    engine = SearchEngine.open(world["gallery"], world["model"])
    results, _ = engine.search_audio([world["recordings"] / "site1" / "rec0.wav"], top_k=5, n_images=6,
                                     species=[SPECIES[1][0], SPECIES[2][0]])
    for window in results[0].windows:
        assert {h.key for h in window.species} <= {SPECIES[1][0], SPECIES[2][0]}
        assert {i.species for i in window.images} <= {SPECIES[1][0], SPECIES[2][0]}
    result = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"], "--gallery",
                 world["gallery"], "--species-list", slist, "--format", "json", "--output", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    with pytest.raises(BirdbridgeError, match="none of the listed species is in this gallery"):
        engine.species_subset(["Nonexistus avis"])
    # As BirdNET-Analyzer: species the gallery lacks are left out with a warning, the rest are kept.
    with caplog.at_level("WARNING", logger="birdbridge.search.engine"):
        subset = engine.species_subset(["Nonexistus avis", SPECIES[1][0]])
    assert [engine._species[i].key for i in subset] == [SPECIES[1][0]]
    assert "1 listed species are not in this gallery's species index" in caplog.text
    slist.write_text(f"Nonexistus avis_Nowhere Bird\n{SPECIES[2][0]}_{SPECIES[2][1]}\n")
    result = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"], "--gallery",
                 world["gallery"], "--species-list", slist, "--format", "csv", "--output", tmp_path / "p")
    assert result.returncode == 0, result.stderr
    assert "are left out: Nonexistus avis" in result.stderr


def test_species_list_takes_every_label_form(world, tmp_path, capsys) -> None:
    """Codes and common names are looked up in the gallery's species index (here rebuilt from a taxonomy
    with codes); names in any case, folder-style, BirdNET-style and with a subspecies all find their species."""
    from birdbridge.gallery import Gallery, build_species_index
    from birdbridge.models.loader import load_teacher
    from birdbridge.species import load_taxonomy_csv

    gallery = tmp_path / "gallery"
    shutil.copytree(world["gallery"], gallery)
    taxa = tmp_path / "taxa.csv"
    codes = ["bkbmag1", "amerob", "comrav", "whbnut"]
    rows = [f"{sci},{common},{code}\n" for (sci, common, _), code in zip(SPECIES, codes, strict=True)]
    taxa.write_text("scientific_name,common_name,species_code\n" + "".join(rows))
    g = Gallery.open(gallery)
    build_species_index(g, load_teacher(world["teacher"]), taxonomy=load_taxonomy_csv(taxa), progress=False)
    g.close()
    slist = tmp_path / "forms.txt"
    slist.write_text("# my site\nBKBMAG1\nTurdus_migratorius\n  corvus   corax ssp. principalis_Common Raven \n")
    engine = SearchEngine.open(gallery, world["model"])
    wanted = [SPECIES[0][0], SPECIES[1][0], SPECIES[2][0]]
    assert [engine._species[i].key for i in engine.species_subset(slist)] == wanted
    assert [engine._species[i].key for i in engine.species_subset(["american robin", "comrav"])] == wanted[1:]
    result = run(capsys, "search", world["recordings"] / "site1", "--model", world["model"], "--gallery", gallery,
                 "--species-list", slist, "--format", "json", "--min-score", "0", "--top-k", "4", "--images", "0",
                 "--score", "softmax")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)
    keys = {hit["key"] for f in files for w in f["windows"] for hit in w["species"]}
    assert keys == set(wanted), keys
    slist.write_text("Pica hudsonia\nnocode1\n")
    result = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"], "--gallery",
                 gallery, "--species-list", slist)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "forms.txt: line 2: 'nocode1' is not a species name" in result.stderr


def test_text_image_and_like_queries(world, tmp_path, capsys) -> None:
    engine = SearchEngine.open(world["gallery"], world["model"])
    species, images = engine.search_texts([SPECIES[0][1]], n_images=3)[0]
    assert len(images) == 3 and species
    picture = next((world["root"] / "photos").rglob("*.png"))
    _, similar = engine.search_images([picture], n_images=1)[0]
    assert similar[0].score == pytest.approx(1.0, abs=1e-2)  # the picture itself is in the gallery
    out = run(capsys, "search", "--gallery", world["gallery"], "--text", SPECIES[0][1], "--images", "2")
    assert out.returncode == 0, out.stderr
    store = tmp_path / "store.parquet"
    made = run(capsys, "embed", "audio", "-m", world["model"], world["manifest"].parent / "audio", "-o", store)
    assert made.returncode == 0, made.stderr
    like = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"], "--gallery",
               world["gallery"], "--like", store, "--top-k", "3", "--format", "json")
    assert like.returncode == 0, like.stderr
    rows = json.loads(like.stdout)
    assert len(rows[0]["similar"]) == 3 and rows[0]["similar"][0]["score"] <= 1.0
    other = tmp_path / "other.parquet"
    assert run(capsys, "embed", "audio", "-m", world["student"], world["recordings"] / "site1" / "rec0.wav", "-o",
               other).returncode == 0
    refused = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"], "--gallery",
                  world["gallery"], "--like", other)
    assert refused.returncode == 1 and "made by model" in refused.stderr


def test_text_and_picture_queries_answer_at_the_rank_asked(world, capsys) -> None:
    """--rank on --text and --image: each genus's probability is the sum of its species' (the softmax rule);
    --like, which finds recordings, refuses it."""
    engine = SearchEngine.open(world["gallery"], world["model"])
    picture = next((world["root"] / "photos").rglob("*.png"))
    for query in ({"texts": [SPECIES[0][1]]}, {"images": [picture]}):
        ask = engine.search_texts if "texts" in query else engine.search_images
        species = ask(*query.values(), n_images=0, top_k=len(SPECIES))[0][0]
        genera = ask(*query.values(), n_images=0, top_k=len(SPECIES), rank="genus")[0][0]
        by_genus: dict[str, float] = {}
        for hit in species:
            by_genus[hit.scientific_name.split()[0]] = by_genus.get(hit.scientific_name.split()[0], 0.0) + hit.score
        assert {h.taxon_rank for h in genera} == {"genus"} and {h.key for h in genera} == set(by_genus)
        assert {h.key: h.score for h in genera} == pytest.approx(by_genus)
    out = run(capsys, "search", "--gallery", world["gallery"], "--text", SPECIES[2][1], "--rank", "genus", "--format",
              "json", "--images", "0")
    assert out.returncode == 0, out.stderr
    assert {h["taxon_rank"] for h in json.loads(out.stdout)["species"]} == {"genus"}
    refused = run(capsys, "search", world["recordings"] / "site1" / "rec0.wav", "--model", world["model"],
                  "--gallery", world["gallery"], "--like", world["recordings"], "--rank", "genus")
    assert refused.returncode == 1 and "--rank does not apply" in refused.stderr
    bad = run(capsys, "search", "--gallery", world["gallery"], "--text", "x", "--rank", "tribe")
    assert bad.returncode == 1 and "unknown rank 'tribe'" in bad.stderr


def test_refuses_students_of_other_teachers(world, tmp_path, capsys) -> None:
    from birdbridge.models.standins import build_small_clip

    with pytest.raises(BirdbridgeError, match="not a birdbridge student"):
        SearchEngine.open(world["gallery"], world["student"])  # a plain CLAP
    other = build_small_clip(tmp_path / "other-teacher", seed=5)
    other_gallery = tmp_path / "g2"
    build_gallery([world["root"] / "photos"], other_gallery, str(other), progress=False)
    result = run(capsys, "search", world["recordings"], "--model", world["model"], "--gallery", other_gallery)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "teacher" in result.stderr


def test_merge_windows() -> None:
    def w(i, start, end, key, score):
        return WindowResult(i, start, end, [SpeciesHit(key, key, None, None, score, score)], [])

    merged = merge_windows([w(0, 0, 3, "a", 0.5), w(1, 3, 6, "a", 0.9), w(2, 6, 9, "b", 0.7), w(3, 12, 15, "b", 0.6)])
    assert [(m.start_s, m.end_s, m.top.key, m.top.score) for m in merged] == [
        (0, 6, "a", 0.9), (6, 9, "b", 0.7), (12, 15, "b", 0.6)]


def rounded(data, digits: int = 4):
    """``data`` (JSON) with its floats rounded."""
    if isinstance(data, dict):
        return {k: rounded(v, digits) for k, v in data.items()}
    if isinstance(data, list):
        return [rounded(v, digits) for v in data]
    return round(data, digits) if isinstance(data, float) else data


def test_python_folder_runs_write_resume_and_report(world, tmp_path) -> None:
    """`search()` is the one way to run folders from Python too: files as the CLI writes them, resumed runs,
    --combined, and the inputs that failed, in a typed report."""
    from birdbridge.search.results import FileResult

    engine = SearchEngine.open(world["gallery"], world["model"])
    out = tmp_path / "out"
    first = search(world["recordings"], engine=engine, output=out, format="json", min_score=0.0)
    assert sorted(p.relative_to(out).as_posix() for p in first.written) == [
        f"site1/rec{i}.birdbridge.results.json" for i in range(3)]
    assert first.results == [] and [Path(f.source).name for f in first.failures] == ["broken.wav"]
    in_memory = search(world["recordings"] / "site1" / "rec0.wav", engine=engine, min_score=0.0).results
    on_disk = json.loads((out / "site1" / "rec0.birdbridge.results.json").read_text())
    # one JSON view (batches differ in ulps); the json format leaves out the windows without a detection
    assert rounded(on_disk) == rounded([r.to_dict(all_windows=False) for r in in_memory])
    assert FileResult.from_dict(in_memory[0].to_dict()) == in_memory[0]
    again = search(world["recordings"], engine=engine, output=out, format="json")
    assert again.written == [] and sorted(p.name for p in again.skipped) == ["rec0.wav", "rec1.wav", "rec2.wav"]
    combined = search(world["recordings"], engine=engine, output=tmp_path / "all.csv", format="csv", combined=True)
    assert combined.written == [tmp_path / "all.csv"] and len(combined.results) == 3
    with pytest.raises(BirdbridgeError, match=r"broken\.wav"):  # not one input could be searched
        search(world["recordings"] / "site1" / "broken.wav", engine=engine)
    with pytest.raises(BirdbridgeError, match="unknown format 'xlsx'"):
        search(world["recordings"], engine=engine, output=out, format="xlsx")


def test_python_like_queries(world, tmp_path) -> None:
    from birdbridge.embed import embed_audio_windows, write_table
    from birdbridge.search import search_like

    store = write_table(tmp_path / "store.parquet", embed_audio_windows(world["manifest"].parent / "audio",
                                                                        world["model"], progress=False))
    rec = world["recordings"] / "site1" / "rec0.wav"
    rows, failures = search_like([rec, world["recordings"] / "site1" / "broken.wav"], store, world["model"], k=2)
    assert [Path(f.source).name for f in failures] == ["broken.wav"]
    assert {row.file for row in rows} == {str(rec)} and all(len(row.similar) == 2 for row in rows)
    assert rows[0].to_dict()["similar"][0]["score"] == rows[0].similar[0].score >= rows[0].similar[1].score
    with pytest.raises(BirdbridgeError, match="needs the model"):
        search_like([rec], store, None)


def test_batch_size_reaches_the_model_and_leaves_results_alone(world, tmp_path, capsys, monkeypatch) -> None:
    import birdbridge.embed.audio as embed_audio

    seen: list[int] = []
    real = embed_audio.embed_audio_windows

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(embed_audio, "embed_audio_windows", spy)
    recording = world["recordings"] / "site1" / "rec0.wav"
    rows = {}
    for size in ("1", "7"):
        result = run(capsys, "search", recording, "--model", world["model"], "--gallery", world["gallery"], "--hop",
                     "0.25", "--batch-size", size, "--format", "csv", "--score", "softmax", "--min-score", "0")
        assert result.returncode == 0, result.stderr
        rows[size] = list(csv.reader(result.stdout.splitlines()))
    assert seen == [1, 7]
    assert len(rows["1"]) > 5 and rows["1"] == rows["7"]
    with pytest.raises(BirdbridgeError, match="batch_size must be at least 1"):
        search(recording, model=world["model"], gallery=world["gallery"], batch_size=0)


def test_channel_searches_one_channel_and_raven_names_it(world, tmp_path, capsys) -> None:
    import numpy as np

    from audio_fixtures import tone
    from birdbridge.audio import read_audio

    left, right = tone(2.5, 16_000, SPECIES[0][2], 0.3), tone(2.5, 16_000, SPECIES[2][2], 0.3)
    stereo = write_wav(tmp_path / "in" / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    for name, samples in (("left", left), ("right", right), ("mix", (left + right) / 2)):
        write_wav(tmp_path / "mono" / f"{name}.wav", samples, subtype="FLOAT")
    np.testing.assert_array_equal(read_audio(stereo, channel=1), read_audio(tmp_path / "mono" / "right.wav"))

    def csv_rows(path: Path, channel: str) -> list[list[str]]:
        result = run(capsys, "search", path, "--model", world["model"], "--gallery", world["gallery"], "--format",
                     "csv", "--score", "softmax", "--min-score", "0", "--top-k", "4", "--channel", channel)
        assert result.returncode == 0, result.stderr
        return [row[:5] for row in csv.reader(result.stdout.splitlines())]  # without the file's name

    picked = {channel: csv_rows(stereo, channel) for channel in ("left", "2", "mix")}
    assert picked["left"] == csv_rows(tmp_path / "mono" / "left.wav", "mix")
    assert picked["2"] == csv_rows(tmp_path / "mono" / "right.wav", "mix")
    assert picked["mix"] == csv_rows(tmp_path / "mono" / "mix.wav", "mix") and picked["left"] != picked["2"]
    out = tmp_path / "out"
    result = run(capsys, "search", stereo, world["recordings"] / "site1" / "rec0.wav", "--model", world["model"],
                 "--gallery", world["gallery"], "--format", "raven", "--output", out, "--channel", "right",
                 "--score", "softmax", "--min-score", "0")
    assert result.returncode == 0 and "rec0.wav: has 1 channel; channel 2 was asked for" in result.stderr
    with open(out / "stereo.birdbridge.selection.table.txt") as fh:
        assert {row["Channel"] for row in csv.DictReader(fh, delimiter="\t")} == {"2"}
    assert json.loads((out / "birdbridge.search-params.json").read_text())["channel"] == 2
    bad = run(capsys, "search", stereo, "--model", world["model"], "--gallery", world["gallery"], "--channel", "up")
    assert bad.returncode == 1 and "--channel: channel 'up' is none of mix, left, right" in bad.stderr

"""Writers for tiny datasets in the real SSW60, iNatSounds and manifest layouts (no files are checked in).

Recordings are real (short) WAV files, pictures real 8x8 JPEGs; videos are placeholder bytes.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from audio_fixtures import write_wav

# species_code, common name, scientific name, family (eBird style, with description), order
BIRDS = (
    ("mallar3", "Mallard", "Anas platyrhynchos", "Anatidae (Ducks, Geese, and Waterfowl)", "Anseriformes"),
    ("dowwoo", "Downy Woodpecker", "Dryobates pubescens", "Picidae (Woodpeckers)", "Piciformes"),
    ("blujay", "Blue Jay", "Cyanocitta cristata", "Corvidae (Crows, Jays, and Magpies)", "Passeriformes"),
    (
        "bkcchi",
        "Black-capped Chickadee",
        "Poecile atricapillus",
        "Paridae (Tits, Chickadees, and Titmice)",
        "Passeriformes",
    ),
    ("norcar", "Northern Cardinal", "Cardinalis cardinalis", "Cardinalidae (Cardinals and Allies)", "Passeriformes"),
    ("whbnut", "White-breasted Nuthatch", "Sitta carolinensis", "Sittidae (Nuthatches)", "Passeriformes"),
    ("yebsap", "Yellow-bellied Sapsucker", "Sphyrapicus varius", "Picidae (Woodpeckers)", "Piciformes"),
    ("cangoo", "Canada Goose", "Branta canadensis", "Anatidae (Ducks, Geese, and Waterfowl)", "Anseriformes"),
)
FROG = ("amebul", "American Bullfrog", "Lithobates catesbeianus", "Ranidae", "Anura")

SAMPLE_RATE = 22_050
CLIP_S = 0.2
MP4_BYTES = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(32)


def write_jpeg(path: Path, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (120, 90, 40)).save(path, "JPEG")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text in a fixture file (for error tests); fails if ``old`` is absent."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    """The 1-based line number of the first line containing ``needle``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def set_cell(path: Path, key: str, column: str, value: Any) -> int:
    """Set ``column`` of the CSV row whose first cell is ``key``; returns that row's line number (header = 1)."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    index = next(i for i, row in enumerate(rows) if i > 0 and row[0] == key)
    rows[index][rows[0].index(column)] = str(value)
    write_csv(path, rows[0], rows[1:])
    return index + 1


# ------------------------------------------------------------------------------------------------ SSW60


@dataclass
class SSW60Fixture:
    root: Path
    species: list[str]  # scientific names, label order
    audio_ids: list[str]
    image_ids: dict[str, list[str]]  # source -> asset ids
    video_ids: list[str]
    reliable: list[bool]  # expected reliable_audio per video
    audio_splits: dict[str, int] = field(default_factory=dict)


def write_ssw60(
    root: Path,
    n_species: int = 4,
    audio_per_species: int = 3,
    images_per_species: int = 2,
    videos_per_species: int = 2,
    image_sources: Sequence[str] = ("nabirds", "inat"),
    video: bool = True,
) -> SSW60Fixture:
    """SSW60's archive root: taxa.csv, audio_ml.csv + audio_ml/, images_*.csv + images_*/, video_ml.csv + video_ml/."""
    root.mkdir(parents=True, exist_ok=True)
    birds = BIRDS[:n_species]
    write_csv(
        root / "taxa.csv",
        [
            "label",
            "species_code",
            "inat_taxon_id",
            "inat2021_label",
            "nabirds_labels",
            "common_name",
            "scientific_name",
            "family",
            "order",
        ],
        [
            [i, code, 6930 + i, f"0{3900 + i}", f"[{300 + i}, {400 + i}]", common, sci, family, order]
            for i, (code, common, sci, family, order) in enumerate(birds)
        ],
    )
    audio_rows, audio_ids, splits = [], [], {"train": 0, "test": 0}
    for label in range(n_species):
        for k in range(audio_per_species):
            asset = str(100_000 + label * 100 + k)
            write_wav(root / "audio_ml" / f"{asset}.wav", CLIP_S, SAMPLE_RATE, freq=1000 + 300 * label)
            samples = round(CLIP_S * SAMPLE_RATE)
            split = "train" if k < audio_per_species - 1 else "test"
            splits[split] += 1
            audio_rows.append([asset, label, split, SAMPLE_RATE, 1, samples, samples / SAMPLE_RATE])
            audio_ids.append(asset)
    write_csv(
        root / "audio_ml.csv",
        ["asset_id", "label", "split", "samplerate", "channels", "samples", "duration_seconds"],
        audio_rows,
    )
    image_ids: dict[str, list[str]] = {}
    for source in image_sources:
        rows, ids = [], []
        cycle = ("train", "test") if source == "nabirds" else ("train", "val", "test")
        for label in range(n_species):
            for k in range(images_per_species):
                asset = f"nab{label:02d}{k:03d}" if source == "nabirds" else str(3_000_000 + label * 100 + k)
                write_jpeg(root / f"images_{source}" / f"{asset}.jpg")
                rows.append([asset, label, cycle[k % len(cycle)], 8, 8, f"orig-{asset}"])
                ids.append(asset)
        write_csv(root / f"images_{source}.csv", ["asset_id", "label", "split", "height", "width", "source_id"], rows)
        image_ids[source] = ids
    video_ids: list[str] = []
    reliable: list[bool] = []
    if video:
        rows = []
        flags = (("1", True), ("0", False), ("True", True), ("no", False))
        for label in range(n_species):
            for k in range(videos_per_species):
                asset = str(500_000 + label * 100 + k)
                (root / "video_ml").mkdir(exist_ok=True)
                (root / "video_ml" / f"{asset}.mp4").write_bytes(MP4_BYTES)
                text, value = flags[len(video_ids) % len(flags)]
                rows.append([asset, label, "train" if k % 2 == 0 else "test", 29.97, 300, 10.01, 4.5, text])
                video_ids.append(asset)
                reliable.append(value)
        write_csv(
            root / "video_ml.csv",
            ["asset_id", "label", "split", "fps", "frame_count", "duration_seconds", "target_second", "reliable_audio"],
            rows,
        )
    return SSW60Fixture(root, [b[2] for b in birds], audio_ids, image_ids, video_ids, reliable, splits)


# ------------------------------------------------------------------------------------------- iNatSounds


@dataclass
class INatFixture:
    root: Path
    files: dict[str, Path]  # split -> JSON file
    birds: list[str]  # scientific names of the Aves categories, id order
    counts: dict[str, int]  # split -> recordings (all categories)
    bird_counts: dict[str, int]  # split -> recordings of birds


def _category(cid: int, taxon: tuple[str, str, str, str, str], bird: bool) -> dict[str, Any]:
    _code, common, sci, family, order = taxon
    genus, epithet = sci.split()
    klass = "Aves" if bird else "Amphibia"
    family = family.split(" (")[0]
    return {
        "id": cid,
        "name": sci,
        "common_name": common,
        "supercategory": klass,
        "kingdom": "Animalia",
        "phylum": "Chordata",
        "class": klass,
        "order": order,
        "family": family,
        "genus": genus,
        "specific_epithet": epithet,
        "audio_dir_name": f"{cid:05d}_Animalia_Chordata_{klass}_{order}_{family}_{genus}_{epithet}",
        "evaluation": True,
    }


def write_inatsounds(
    root: Path,
    n_species: int = 3,
    per_split: dict[str, int] | None = None,
    frog: bool = True,
) -> INatFixture:
    """``train.json``/``val.json``/``test.json`` and ``<split>/<audio_dir_name>/<uuid>.wav`` under ``root``."""
    per_split = per_split or {"train": 2, "val": 1, "test": 1}
    root.mkdir(parents=True, exist_ok=True)
    categories = [_category(i, BIRDS[i], True) for i in range(n_species)]
    if frog:
        categories.append(_category(n_species, FROG, False))
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    bird_counts: dict[str, int] = {}
    audio_id = 1000
    for split, n in per_split.items():
        audio, annotations = [], []
        for cat in categories:
            for k in range(n):
                name = f"{split}/{cat['audio_dir_name']}/{cat['id']:04d}{k:04d}-{split}.wav"
                write_wav(root / name, CLIP_S, SAMPLE_RATE, freq=800 + 200 * cat["id"])
                audio.append(
                    {
                        "id": audio_id,
                        "file_name": name,
                        "duration": CLIP_S,
                        "latitude": 42.47 + k / 100,
                        "longitude": -76.45,
                        "date": f"2021-05-0{k + 1} 06:30:00+00:00",
                        "user_id": 77,
                        "license": "cc-by-nc",
                    }
                )
                annotations.append({"id": len(annotations), "audio_id": audio_id, "category_id": cat["id"]})
                audio_id += 1
        doc = {
            "info": {"description": "iNatSounds test fixture", "version": "1.0"},
            "audio": audio,
            "categories": categories,
            "annotations": annotations,
        }
        files[split] = root / f"{split}.json"
        files[split].write_text(json.dumps(doc, indent=1), encoding="utf-8")
        counts[split] = len(audio)
        bird_counts[split] = n * n_species
    return INatFixture(root, files, [b[2] for b in BIRDS[:n_species]], counts, bird_counts)


def rewrite_json(path: Path, change) -> None:
    """Load a JSON fixture, let ``change(doc)`` edit it in place, write it back."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


# -------------------------------------------------------------------------------------------- manifests

TAXONOMY_HEADER = ["kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet", "common_name", "code"]


@dataclass
class ManifestFixture:
    root: Path
    audio: Path
    images: Path | None
    videos: Path | None
    taxonomy: Path | None
    species: list[str]  # scientific names, in the taxonomy file's order when there is one
    n_audio: int
    n_images: int
    n_videos: int


def write_taxonomy(path: Path, n_species: int) -> Path:
    rows = []
    for code, common, sci, family, order in BIRDS[:n_species]:
        genus, epithet = sci.split()
        rows.append(["Animalia", "Chordata", "Aves", order, family, genus, epithet, common, code])
    return write_csv(path, TAXONOMY_HEADER, rows)


def _write_table(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
        pq.write_table(pa.table(columns), path)
        return path
    return write_csv(path, header, rows)


def write_manifest(
    root: Path,
    n_species: int = 3,
    per_species: int = 2,
    fmt: str = "csv",
    taxonomy: bool = True,
    images: bool = True,
    videos: bool = False,
    birdnet: bool = False,
) -> ManifestFixture:
    """``audio.<fmt>`` (+ ``images.<fmt>``, ``videos.<fmt>``, ``taxonomy.csv``) with files under ``root``.

    With a taxonomy the species column mixes scientific names, codes and common names; without one it
    holds ``Genus epithet`` (or BirdNET-style ``Genus epithet_Common Name`` when ``birdnet``).
    """
    root.mkdir(parents=True, exist_ok=True)
    birds = BIRDS[:n_species]

    def species_cell(i: int, k: int) -> str:
        code, common, sci, _family, _order = birds[i]
        if taxonomy:
            return (sci, code, common.upper())[(i + k) % 3]
        return f"{sci}_{common}" if birdnet else sci

    audio_rows = []
    for i in range(n_species):
        for k in range(per_species):
            rel = f"audio/{birds[i][0]}_{k}.wav"
            write_wav(root / rel, CLIP_S, SAMPLE_RATE, freq=900 + 100 * i)
            audio_rows.append([rel, species_cell(i, k), "train" if k < per_species - 1 else "test", CLIP_S, f"site{k}"])
    audio = _write_table(root / f"audio.{fmt}", ["path", "species", "split", "duration_s", "site"], audio_rows)
    image_path = video_path = None
    n_images = n_videos = 0
    if images:
        rows = []
        for i in range(n_species):
            for k in range(per_species):
                rel = f"images/{birds[i][0]}_{k}.jpg"
                write_jpeg(root / rel)
                rows.append([rel, species_cell(i, k + 1), "train", "inat", "CC-BY", f"Photographer {k}"])
        image_path = _write_table(
            root / f"images.{fmt}", ["path", "species", "split", "source", "license", "photographer"], rows
        )
        n_images = len(rows)
    if videos:
        rows = []
        for i in range(n_species):
            rel = f"videos/{birds[i][0]}.mp4"
            (root / "videos").mkdir(exist_ok=True)
            (root / rel).write_bytes(MP4_BYTES)
            rows.append([f"vid{i}", rel, species_cell(i, 0), "test", 30.0, 300, 10.0, 2.5, "yes"])
        video_path = _write_table(
            root / f"videos.{fmt}",
            ["id", "path", "species", "split", "fps", "frame_count", "duration_s", "target_second", "reliable_audio"],
            rows,
        )
        n_videos = len(rows)
    tax = write_taxonomy(root / "taxonomy.csv", n_species) if taxonomy else None
    return ManifestFixture(
        root, audio, image_path, video_path, tax, [b[2] for b in birds], len(audio_rows), n_images, n_videos
    )

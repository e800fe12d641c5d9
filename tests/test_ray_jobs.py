"""Bulk jobs on Ray (``--ray``): ``embed audio``, folder searches, ``archive build`` and ``index`` give what the local
path gives (same rows, vectors within float tolerance), a rerun after a killed job embeds only the files without a
shard, and without Ray installed ``--ray`` says how to install it. One local Ray instance for the module."""

from __future__ import annotations

import json
import os
import sys
from functools import partial

import numpy as np
import pytest

import archive_fixtures as fx
from birdbridge.archive import Archive, build_archive
from birdbridge.embed.audio import embed_audio_windows, window_spec_for
from birdbridge.embed.writers import read_table
from birdbridge.gallery import Gallery, build_gallery
from birdbridge.models.loader import load_student
from cli_fixtures import run
from extras import need_extra
from test_gallery_build import write_images

need_extra("ray", "ray")

TONES = [("a/SITE01_20240501_053000.wav", 500.0, 2.0), ("a/b.wav", 2000.0, 2.5), ("c.wav", 4000.0, 1.5)]


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    for attempt in range(3):  # Ray 2.60 gives its agents 15 s to start, which a busy machine can miss
        try:
            ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
            break
        except Exception as exc:
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            ray.shutdown()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clap, tiny_clip) -> dict:
    """A student distilled for the tiny teacher, three recordings and a broken one, pictures and their gallery."""
    root = tmp_path_factory.mktemp("ray")
    recordings = root / "recordings"
    for rel, freq, seconds in TONES:
        fx.write_tone(recordings / rel, freq, seconds)
    (recordings / "broken.wav").write_bytes(b"RIFF not audio")
    photos = root / "photos"
    write_images(photos, {"Pica hudsonia": 2, "Turdus migratorius": 2})
    (photos / "Pica hudsonia" / "broken.png").write_bytes(b"not a picture")
    gallery = root / "gallery"
    build_gallery([photos], gallery, str(tiny_clip), templates="single", progress=False, ann=False)
    return {"root": root, "student": fx.make_student(root / "student", tiny_clap, tiny_clip),
            "recordings": recordings, "photos": photos, "gallery": gallery, "teacher": tiny_clip}


def _same_store(ray_store, local_store, key) -> None:
    """The same records (by ``key``) with the same vectors, row by row."""
    ours, theirs = ray_store.records(range(len(ray_store))), local_store.records(range(len(local_store)))
    assert [key(r) for r in ours] == [key(r) for r in theirs] and len(ours)
    np.testing.assert_allclose(np.asarray(ray_store.vectors, np.float32), np.asarray(local_store.vectors, np.float32),
                               atol=2e-3)


def test_embed_audio_on_ray_equals_local(ray_instance, world, tmp_path, capsys) -> None:
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    assert run(capsys, "embed", "audio", world["recordings"], "-o", local, "-m", world["student"]).returncode == 0
    result = run(capsys, "embed", "audio", world["recordings"], "-o", remote, "-m", world["student"], "--ray")
    assert result.returncode == 0, result.stderr
    assert "broken.wav" in result.stderr and "skipped 1 audio files" in result.stderr  # listed as the local path does
    ours, theirs = read_table(remote), read_table(local)
    assert ours.names == theirs.names and len(set(ours.names)) == len(TONES)
    np.testing.assert_allclose(ours.start_s, theirs.start_s)
    np.testing.assert_allclose(ours.end_s, theirs.end_s)
    np.testing.assert_allclose(ours.vectors, theirs.vectors, atol=1e-5)
    assert ours.meta == theirs.meta
    assert not (tmp_path / ".ray.parquet.ray-shards").exists()  # merged, then removed


def test_a_rerun_embeds_only_the_files_without_a_shard(ray_instance, world, tmp_path) -> None:
    """A killed job left shards for two recordings: the rerun embeds the third only, and merges all three."""
    from birdbridge.embed.ray_jobs import Shards, audio_spec, run_bulk

    files = sorted(str(p) for p in world["recordings"].rglob("*.wav") if p.name != "broken.wav")
    student = load_student(world["student"])
    spec = window_spec_for(student, None, None)
    bulk = audio_spec(str(world["student"]), student, spec)
    local = embed_audio_windows(files, student, progress=False)
    shards = Shards(tmp_path / "shards", bulk.identity)
    for file in files[:2]:
        mine = [i for i, name in enumerate(local.names) if name == file]
        shards.write(file, local.vectors[mine], local.start_s[mine], local.end_s[mine])
    written = {f: shards.path(f).stat().st_mtime_ns for f in files[:2]}

    job = run_bulk(files, bulk, shards.folder)
    assert (job.resumed, job.embedded, job.failures) == (files[:2], files[2:], [])
    assert {f: shards.path(f).stat().st_mtime_ns for f in files[:2]} == written  # not written again
    table = job.shards.table(files, job.failures, student.embed_dim)
    assert table.names == local.names
    np.testing.assert_allclose(table.vectors, local.vectors, atol=1e-5)
    assert run_bulk(files, bulk, shards.folder).embedded == []  # all done: nothing runs


def _read_marker(file: str):
    return np.full((1, 4), 0.5, np.float32), np.zeros(1), np.ones(1)


def _no_model(device):
    return None


def _die_once(marker: str, model, inputs: np.ndarray) -> np.ndarray:
    """Kills its worker process the first time it runs (it leaves ``marker``), and embeds afterwards."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return inputs


def _read_or_die(file: str):
    """Kills its worker process whenever it reads a file named ``bad.x`` (a decoder that crashes on one file)."""
    if file.endswith("bad.x"):
        os._exit(1)
    return _read_marker(file)


def test_dead_workers_are_restarted_and_a_file_that_always_kills_its_reader_is_listed(ray_instance, tmp_path) -> None:
    """The first inference actor dies mid-batch: Ray restarts it and the batch runs again. A read whose worker died is
    retried once; a file that kills its reader every time is then a failure, not a hang. No other file is lost."""
    import ray.cloudpickle

    from birdbridge.embed.ray_jobs import BulkSpec, run_bulk

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    files = [str(tmp_path / name) for name in ("0.x", "bad.x", "2.x", "3.x")]
    for file in files:
        open(file, "w").close()
    marker = tmp_path / "died"
    spec = BulkSpec("test", _read_or_die, _no_model, partial(_die_once, str(marker)), {"test": 1})
    job = run_bulk(files, spec, tmp_path / "shards", progress=False)
    assert marker.exists()  # the actor did die
    good = [files[0], *files[2:]]
    assert job.embedded == good and job.shards.table(good, dim=4).vectors.shape == (3, 4)
    assert [f.source for f in job.failures] == [files[1]] and "run the command again" in job.failures[0].message


def test_archive_build_on_ray_equals_local(ray_instance, world, tmp_path) -> None:
    local = build_archive([world["recordings"]], tmp_path / "local", world["student"], progress=False, ann=False)
    report = build_archive([world["recordings"]], tmp_path / "ray", world["student"], progress=False, ann=False,
                           ray="local")
    assert (report.files_added, report.windows_added) == (local.files_added, local.windows_added)
    assert local.files_added == len(TONES)
    assert [f.source for f in report.failures] == [f.source for f in local.failures] == [
        str((world["recordings"] / "broken.wav").resolve())]
    ours, theirs = Archive.open(tmp_path / "ray"), Archive.open(tmp_path / "local")
    assert [(f.path, f.site, f.date, f.n_windows) for f in ours.files()] == [
        (f.path, f.site, f.date, f.n_windows) for f in theirs.files()]
    _same_store(ours, theirs, lambda w: (w.file, w.start_s, w.end_s))
    assert not (tmp_path / "ray" / "ray-shards.tmp").exists()


def test_index_on_ray_equals_local(ray_instance, world, tmp_path, capsys) -> None:
    result = run(capsys, "index", "--images", world["photos"], "-o", tmp_path / "g", "--teacher", world["teacher"],
                 "--templates", "single", "--no-ann", "--ray", "local")
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr and "added 4 images" in result.stdout
    _same_store(Gallery.open(tmp_path / "g"), Gallery.open(world["gallery"]), lambda r: (r.id, r.species))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_search_folder_on_ray_equals_local(ray_instance, world, tmp_path, capsys) -> None:
    args = ["search", "-g", world["gallery"], "-m", world["student"], world["recordings"], "--score", "softmax",
            "--format", "json"]
    assert run(capsys, *args, "-o", tmp_path / "local").returncode == 0
    result = run(capsys, *args, "-o", tmp_path / "ray", "--ray")
    assert result.returncode == 0, result.stderr
    assert "broken.wav" in result.stderr
    written = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.json"))
    assert len(written) == len(TONES) + 1  # and the params file
    assert sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").rglob("*.json")) == written
    for rel in written:
        if "params" not in rel.name:
            ours, theirs = (json.loads((tmp_path / side / rel).read_text()) for side in ("ray", "local"))
            assert _rounded(ours) == _rounded(theirs)
            assert [len(r["windows"]) for r in ours] == [len(r["windows"]) for r in theirs] and ours[0]["windows"]
    assert not (tmp_path / "ray" / ".birdbridge-ray-shards").exists()


def test_ray_without_an_address_is_a_local_instance() -> None:
    from birdbridge.cli.common import ray_address_given

    assert ray_address_given(["index", "--ray"]) == ["index", "--ray", "local"]
    assert ray_address_given(["embed", "--ray", "-o", "x.npy"]) == ["embed", "--ray", "local", "-o", "x.npy"]
    assert ray_address_given(["embed", "--ray", "auto", "-o", "x"]) == ["embed", "--ray", "auto", "-o", "x"]
    assert ray_address_given(["search", "--ray=ray://head:10001"]) == ["search", "--ray=ray://head:10001"]


def test_without_ray_the_option_says_how_to_install_it(world, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = run(capsys, "embed", "audio", world["recordings"], "-o", tmp_path / "x.parquet", "--ray")
    assert result.returncode == 1
    assert "pip install 'birdbridge[ray]'" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.parquet").exists()

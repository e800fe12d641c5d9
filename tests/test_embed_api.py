"""The Python embedding API on small models in the real layouts: order, shapes, norms, windows, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from audio_fixtures import tone, write_wav
from birdbridge.audio import AudioError, repeat_pad
from birdbridge.embed import (
    embed_audio,
    embed_audio_windows,
    embed_image_files,
    embed_images,
    embed_species,
    embed_texts,
)
from birdbridge.errors import BirdbridgeError, ImageError
from birdbridge.models.loader import load_student, load_teacher


def unit_rows(x: np.ndarray) -> bool:
    return x.dtype == np.float32 and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_embed_audio_one_row_per_file_in_order(tiny_clap, audio_dir) -> None:
    files = sorted(audio_dir.iterdir())
    out = embed_audio(files, tiny_clap)
    assert out.shape == (4, load_student(tiny_clap).embed_dim) and unit_rows(out)
    reverse = embed_audio(files[::-1], tiny_clap)
    assert np.allclose(out, reverse[::-1], atol=1e-5)
    folder = embed_audio(audio_dir, tiny_clap)  # a folder expands to its sorted files
    assert np.allclose(folder, out, atol=1e-5)


def test_windows_and_times(tiny_clap, tmp_path) -> None:
    path = tmp_path / "long.wav"
    write_wav(path, 3.5, freq=700)
    table = embed_audio_windows([path], tiny_clap, hop_s=0.5)  # 1 s windows every 0.5 s
    assert list(table.start_s) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert table.end_s[-1] == pytest.approx(3.5)
    assert table.names == [str(path)] * 6 and unit_rows(table.vectors)


def test_short_clip_is_repeat_padded(tiny_clap, tmp_path) -> None:
    student = load_student(tiny_clap)
    x = tone(0.3, 16_000, 2000)
    path = tmp_path / "short.wav"
    write_wav(path, x, subtype="FLOAT")
    from_file = embed_audio(path, tiny_clap)
    by_hand = student.embed(repeat_pad(x, student.window_samples)[None])
    assert np.allclose(from_file, by_hand, atol=1e-5)


def test_arrays_are_resampled(tiny_clap) -> None:
    x48 = tone(1.0, 48_000, 1000)
    x16 = tone(1.0, 16_000, 1000)
    a = embed_audio([x48], tiny_clap, sample_rate=48_000)
    b = embed_audio([x16], tiny_clap, sample_rate=16_000)
    assert a.shape == b.shape == (1, a.shape[1])
    assert (a @ b.T).item() > 0.99


def test_bad_files_skipped_and_reported(tiny_clap, audio_dir, tmp_path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio at all")
    nan = np.zeros(16_000, np.float32)
    nan[100] = np.nan
    write_wav(bad / "nan.wav", nan, subtype="FLOAT")
    good = sorted(audio_dir.iterdir())
    table = embed_audio_windows([*good, *sorted(bad.iterdir()), tmp_path / "missing.wav"], tiny_clap)
    failed = {f.source.split("/")[-1] for f in table.failures}
    assert failed == {"empty.wav", "text.wav", "nan.wav", "missing.wav"}
    assert all(f.source in f.message for f in table.failures)
    assert set(table.names) == {str(p) for p in good}  # every good file kept
    with pytest.raises(AudioError, match=r"nan\.wav"):
        embed_audio([good[0], bad / "nan.wav"], tiny_clap)


def test_window_longer_than_model_is_refused(tiny_clap, audio_dir) -> None:
    with pytest.raises(BirdbridgeError, match="longer than the model"):
        embed_audio(audio_dir, tiny_clap, window_s=5.0)


def images(tmp_path) -> list:
    rng = np.random.default_rng(0)
    paths = []
    for i, mode in enumerate(["RGB", "RGBA", "L"]):
        img = Image.fromarray(rng.integers(0, 255, (40 + 10 * i, 50, 3), dtype=np.uint8)).convert(mode)
        path = tmp_path / f"img{i}.png"
        img.save(path)
        paths.append(path)
    return paths


def test_embed_images_order_and_errors(tiny_clip, tmp_path) -> None:
    paths = images(tmp_path)
    out = embed_images(paths, tiny_clip)
    assert out.shape == (3, load_teacher(tiny_clip).embed_dim) and unit_rows(out)
    assert np.allclose(embed_images(paths[::-1], tiny_clip)[::-1], out, atol=1e-5)
    pil = embed_images([Image.open(paths[1])], tiny_clip)
    assert np.allclose(pil[0], out[1], atol=1e-5)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    table = embed_image_files([paths[0], broken, paths[2]], tiny_clip)
    assert table.names == [str(paths[0]), str(paths[2])]
    assert [f.source for f in table.failures] == [str(broken)] and "broken.jpg" in table.failures[0].message
    with pytest.raises(ImageError, match=r"broken\.jpg"):
        embed_images([broken], tiny_clip)


def test_embed_texts_teacher_and_clap(tiny_clip, tiny_clap) -> None:
    texts = ["Pica hudsonia", "black-billed magpie", "a bird sings"]
    t = embed_texts(texts, tiny_clip)
    assert t.shape == (3, load_teacher(tiny_clip).embed_dim) and unit_rows(t)
    assert np.allclose(embed_texts(texts[::-1], tiny_clip)[::-1], t, atol=1e-5)
    c = embed_texts(texts, tiny_clap)
    assert c.shape[0] == 3 and unit_rows(c)


def test_embed_species_matches_manual_average(tiny_clip) -> None:
    species = ["Pica hudsonia_Black-billed Magpie", "Turdus migratorius_American Robin"]
    out = embed_species(species, tiny_clip, forms=["scientific", "common"], templates="single", cache=False)
    manual = []
    for texts in (["a photo of Pica hudsonia.", "a photo of Black-billed Magpie."],
                  ["a photo of Turdus migratorius.", "a photo of American Robin."]):
        e = embed_texts(texts, tiny_clip).mean(axis=0)
        manual.append(e / np.linalg.norm(e))
    assert np.allclose(out, np.stack(manual), atol=1e-5) and unit_rows(out)


def test_clap_text_side_tells_texts_apart(tiny_clap) -> None:
    """The stand-in CLAP's own tokenizer must really tokenise (a broken one maps every text alike)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_clap)
    ids = tok(["Pica hudsonia", "American Robin"])["input_ids"]
    assert len(tok) > 50 and len(ids[0]) > 2 and ids[0] != ids[1]
    out = embed_texts(["Pica hudsonia", "American Robin"], tiny_clap)
    assert float(out[0] @ out[1]) < 0.9999

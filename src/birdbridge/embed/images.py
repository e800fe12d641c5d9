"""Pictures -> teacher image embeddings, decoded in background threads and batched."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from birdbridge.embed.table import EmbeddingTable, skipped
from birdbridge.errors import BirdbridgeError, Failure, ImageError
from birdbridge.models.image_preprocess import open_image
from birdbridge.models.loader import load_teacher
from birdbridge.utils.input_files import IMAGE_EXTENSIONS
from birdbridge.utils.prefetch import batched
from birdbridge.utils.progress import progress_bar
from birdbridge.utils.walk import FolderFiles, collect_files

ImageInput = str | os.PathLike[str] | Image.Image


def scan_image_files(inputs: Sequence[str | os.PathLike[str]]) -> FolderFiles:
    """Files as given; folders expanded (recursively, sorted, hidden entries left out) to the images they
    hold; unreadable subfolders, broken links and link loops in ``problems``."""
    return collect_files(inputs, IMAGE_EXTENSIONS, what="images")


def embed_image_files(
    inputs: Sequence[ImageInput],
    model="bioclip-2",
    *,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool | None = None,
    skip_errors: bool = True,
    workers: int = 2,
) -> EmbeddingTable:
    """Embed images (paths, folders or PIL images); bad files are skipped and listed in ``failures``."""
    teacher = load_teacher(model, device) if isinstance(model, (str, os.PathLike)) else model
    items, failures = expand_images(inputs)
    if failures and not skip_errors:
        raise BirdbridgeError(failures[0].message)
    names = [str(x) if isinstance(x, Path) else f"image[{i}]" for i, x in enumerate(items)]

    def prepare(item: Path | Image.Image) -> torch.Tensor | ImageError:
        try:
            img = item if isinstance(item, Image.Image) else open_image(item)
            return teacher.preprocess(img)
        except ImageError as exc:
            return exc

    vectors: list[np.ndarray] = []
    kept: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, progress_bar(
        "Embedding images", len(items), progress
    ) as bar:
        for batch in batched(_in_order(pool, prepare, list(zip(names, items, strict=True))), batch_size):
            good = []
            for name, result in batch:
                if isinstance(result, ImageError):
                    if not skip_errors:
                        raise result
                    failures.append(Failure(name, str(result)))
                else:
                    good.append((name, result))
            if good:
                vectors.append(teacher.encode_images(torch.stack([t for _, t in good])).numpy())
                kept.extend(n for n, _ in good)
            bar.advance(len(batch))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, teacher.embed_dim), np.float32)
    return EmbeddingTable(vectors=matrix.astype(np.float32, copy=False), names=kept, failures=failures)


def expand_images(inputs: Sequence[ImageInput]) -> tuple[list[Path | Image.Image], list[Failure]]:
    """The pictures of ``inputs`` (folders expanded; a missing file is kept, to fail and be reported on its own), and
    the folder entries that could not be read."""
    items: list[Path | Image.Image] = []
    failures: list[Failure] = []
    for x in inputs:
        if isinstance(x, Image.Image):
            items.append(x)
        elif Path(x).is_dir():
            found = scan_image_files([x])
            items.extend(found.files)
            failures += skipped(found.problems)
        else:
            items.append(Path(x))
    return items, failures


def embed_images(
    inputs: ImageInput | Sequence[ImageInput],
    model="bioclip-2",
    *,
    batch_size: int = 32,
    device: str | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """float32 L2-normalised teacher image embeddings [N, D], in input order; a bad file raises."""
    if isinstance(inputs, (str, os.PathLike, Image.Image)):
        inputs = [inputs]
    table = embed_image_files(
        list(inputs), model, batch_size=batch_size, device=device, progress=progress, skip_errors=False
    )
    if not len(table):
        raise BirdbridgeError("no images given")
    return table.vectors


def cached_image_table(
    paths: Sequence[str | os.PathLike[str]], teacher, *, batch_size: int = 32, progress: bool | None = None,
    cache: bool = True,
) -> EmbeddingTable:
    """``embed_image_files`` of ``paths``, cached on disk by teacher and by the files' paths, sizes and times."""
    from birdbridge.utils.array_cache import cache_root, cached_entry

    files = [Path(p) for p in paths]
    listing = hashlib.sha256()
    for p in files:
        stat = p.stat() if p.exists() else None
        listing.update(f"{p.resolve()}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}\n".encode())
    identity = {"kind": "images", "version": 2,  # 2: every Pillow mode converted correctly
                "model_fingerprint": teacher.fingerprint,
                "files": listing.hexdigest(), "n_files": len(files)}

    def compute():
        table = embed_image_files(files, teacher, batch_size=batch_size, progress=progress)
        return table.vectors, {"names": table.names,
                               "failures": [[f.source, f.message] for f in table.failures]}

    vectors, meta = cached_entry(cache_root() / "image_embeddings" if cache else None, identity, compute,
                                 what="image embedding")
    return EmbeddingTable(vectors=vectors, names=list(meta["names"]),
                          failures=[Failure(s, m) for s, m in meta["failures"]])


def _in_order(pool: ThreadPoolExecutor, fn, items: list[tuple[str, object]], ahead: int = 64) -> Iterator:
    """(name, fn(item)) in order, computed by ``pool`` up to ``ahead`` items in advance."""
    pending: deque = deque()
    for name, item in items:
        pending.append((name, pool.submit(fn, item)))
        if len(pending) >= ahead:
            n, fut = pending.popleft()
            yield n, fut.result()
    for n, fut in pending:
        yield n, fut.result()

"""Archive test fixtures: a (random, untrained) student distilled for the tiny teacher, tone recordings with
AudioMoth / Song Meter file names, synthetic archives of planted vectors, and a build that pauses to be killed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audio_fixtures import tone, write_wav
from birdbridge.archive.metadata import RecordingMeta
from birdbridge.archive.store import Archive, NewRecording
from store_fixtures import PAUSE

SR = 16_000
#: (relative path, tone frequency, seconds): 1 s windows, so 3 windows a recording.
RECORDINGS = [
    ("SITE01/20240501_053000.wav", 500.0, 3.0),
    ("SITE01/20240501_233000.wav", 1000.0, 3.0),
    ("SITE02_20240502_013000.wav", 2000.0, 3.0),
    ("SMA12345_20240503_120000.wav", 4000.0, 3.0),
    ("north/20240504T064500_x.wav", 6000.0, 3.0),
    ("undated.wav", 3000.0, 3.0),
]


def make_student(root: Path, clap: Path, clip: Path, seed: int = 0) -> Path:
    """A student (a fresh head on the tiny CLAP) saved as distilled for the teacher ``clip``."""
    import torch

    from birdbridge.models.distilled import save_distilled_student
    from birdbridge.models.loader import load_teacher
    from birdbridge.store.vector_store import teacher_meta
    from birdbridge.train.config import HeadConfig
    from birdbridge.train.student_setup import fresh_student

    teacher = load_teacher(str(clip))
    torch.manual_seed(seed)
    student = fresh_student(str(clap), HeadConfig(), teacher.embed_dim)
    return save_distilled_student(student, root, teacher=teacher_meta(teacher, str(clip)))


def write_tone(path: Path, freq: float, seconds: float, channels: int = 1) -> Path:
    return write_wav(path, tone(seconds, SR, freq, channels=channels), SR)


def write_recordings(root: Path) -> Path:
    for rel, freq, seconds in RECORDINGS:
        write_tone(root / rel, freq, seconds)
    return root


def build_world(root: Path, clap: Path, clip: Path) -> dict:
    """A student, the :data:`RECORDINGS` and their archive, built in ``root``."""
    from birdbridge.archive.build import build_archive

    student = make_student(root / "student", clap, clip)
    recordings = write_recordings(root / "recordings")
    archive = root / "archive"
    report = build_archive([recordings], archive, student, progress=False)
    return {"root": root, "student": student, "teacher": clip, "recordings": recordings, "archive": archive,
            "report": report}


TEACHER = {"ref": "synthetic", "name": "synthetic", "fingerprint": "5" * 32}


def synthetic_archive(folder: Path, vectors: np.ndarray, files: list[tuple[str, RecordingMeta]], per_file: int,
                      window_s: float = 5.0, teacher: dict | None = None) -> Archive:
    """An archive of planted ``vectors``: ``per_file`` consecutive windows of ``window_s`` per file, in order (in the
    space of ``teacher``, default a synthetic one)."""
    dim = vectors.shape[1]
    archive = Archive.create(folder, {**(teacher or TEACHER), "embed_dim": dim}, dim)
    archive.update_meta(student={"ref": "synthetic", "name": "synthetic", "fingerprint": "6" * 32, "embed_dim": dim,
                                 "band_hz": [0.0, 8000.0]},
                        windowing={"window_s": window_s, "hop_s": window_s}, build={"complete": True})
    starts = np.arange(per_file) * window_s
    batch = []
    for i, (path, meta) in enumerate(files):
        batch.append(NewRecording(path, per_file * window_s, SR, 1, 1000 + i, i, meta,
                                  vectors[i * per_file : (i + 1) * per_file], starts, starts + window_s))
        if len(batch) == 500:
            archive.add_recordings(batch)
            batch = []
    archive.add_recordings(batch)
    return archive


# The resumable build run in a subprocess: `python -c BUILDER ARCHIVE MODEL RECORDINGS [POINT N MARKER]`. It builds
# with one recording per commit; with a pause point it stops, forever, in commit number N: after the vectors are
# written ("vectors"), inside the records' transaction ("records") or after it committed but before the count is
# saved ("count"), and touches MARKER so that the test can SIGKILL it there.
BUILDER = """
import contextlib, sys, time
from pathlib import Path
import birdbridge.store.vector_store as vs
from birdbridge.archive.build import build_archive
from birdbridge.archive.store import Archive

archive, model, recordings = sys.argv[1], sys.argv[2], sys.argv[3]
""" + PAUSE + """
transaction, write_json, append = Archive.transaction, vs.write_json, Archive.append

@contextlib.contextmanager
def paused_transaction(self):
    pause("vectors")
    with transaction(self) as conn:
        yield conn
        pause("records")

def paused_write_json(target, obj):
    if target.name == "archive.json" and obj.get("count"):
        pause("count")
    write_json(target, obj)

def counted_append(self, *args, **kwargs):
    try:
        return append(self, *args, **kwargs)
    finally:
        state["append"] += 1

Archive.transaction = paused_transaction
Archive.append = counted_append
vs.write_json = paused_write_json
report = build_archive([recordings], archive, model, commit_windows=1, progress=False)
print(report.files_added, report.already, report.count)
"""

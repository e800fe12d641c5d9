"""Which models an archive's windows belong to: the student that embedded them and the teacher whose space it is.

Text and picture queries go through the teacher's towers and must come from that teacher (same weights
fingerprint); example recordings go through the student, which must be the very one that embedded the
archive (another student of the same teacher puts windows elsewhere in that space).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from birdbridge.errors import BirdbridgeError
from birdbridge.models.student import AudioStudent

if TYPE_CHECKING:
    from birdbridge.archive.store import Archive


def student_teacher(student: AudioStudent) -> dict[str, Any]:
    """The identity of the teacher a distilled student was trained for; an error for any other model."""
    teacher = student.metadata.get("teacher") or {}
    if not teacher.get("fingerprint") or not teacher.get("name"):
        raise BirdbridgeError(
            f"model {student.name} is not a birdbridge student (it records no teacher): its windows would not live "
            "in an image-text teacher's space, so they could not be searched by name or picture. Distil one with "
            "`birdbridge train` and pass its output folder."
        )
    return {"ref": str(teacher.get("ref") or teacher["name"]), "name": teacher["name"],
            "fingerprint": teacher["fingerprint"], "embed_dim": int(teacher.get("embed_dim") or student.embed_dim)}


def student_meta(student: AudioStudent, ref: str) -> dict[str, Any]:
    cfg = student.frontend_config
    return {"ref": ref, "name": student.name, "fingerprint": student.fingerprint, "embed_dim": student.embed_dim,
            "sample_rate": student.sample_rate, "window_s": student.window_s, "band_hz": [cfg.fmin, cfg.fmax]}


def check_student(arc: Archive, student: AudioStudent, what: str) -> None:
    """Refuse a student other than the one that embedded the archive, naming both."""
    arc.check_teacher(student_teacher(student), what)
    ours = arc.student
    if ours.get("fingerprint") and ours["fingerprint"] != student.fingerprint:
        raise BirdbridgeError(
            f"{what} is {student.name} (fingerprint {student.fingerprint}), but archive {arc.folder} was embedded by "
            f"{ours.get('name')} (fingerprint {ours['fingerprint']}); windows of different students are not "
            f"comparable. Use that model ({ours.get('ref')}) or build a separate archive."
        )


__all__ = ["check_student", "student_meta", "student_teacher"]

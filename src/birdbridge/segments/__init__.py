"""Clips to check by ear: detections of result files cut out of their recordings (``birdbridge segments``).

Reads birdbridge's result files (every ``search --format``) and BirdNET-Analyzer's (:mod:`.detections`), finds
each detection's recording (:mod:`.recordings`), chooses clips per species as BirdNET-Analyzer's segments command
does (``random``, ``confidence`` or ``balanced``, at most ``max_per_species`` each; :mod:`.select`), and writes
them with a CSV index (:mod:`.cut`).
"""

from birdbridge.segments.cut import INDEX_FILE, Clip, SegmentsReport, clip_span, cut_segments
from birdbridge.segments.detections import Detection, read_detections
from birdbridge.segments.select import MODES

__all__ = ["INDEX_FILE", "MODES", "Clip", "Detection", "SegmentsReport", "clip_span", "cut_segments",
           "read_detections"]

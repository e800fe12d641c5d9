"""Merge consecutive windows whose best species is the same into one detection."""

from __future__ import annotations

from dataclasses import replace

from birdbridge.search.results import WindowResult


def merge_windows(windows: list[WindowResult], gap_s: float = 0.0) -> list[WindowResult]:
    """Runs of windows (touching or overlapping, or at most ``gap_s`` apart) with the same top species
    become one window from the first start to the last end; each species keeps its best score and the
    images of the best-scoring window are kept."""
    merged: list[WindowResult] = []
    for window in windows:
        last = merged[-1] if merged else None
        if (last is not None and last.top is not None and window.top is not None
                and last.top.key == window.top.key and window.start_s <= last.end_s + gap_s):
            best = {h.key: h for h in last.species}
            for hit in window.species:
                if hit.key not in best or hit.score > best[hit.key].score:
                    best[hit.key] = hit
            images = window.images if window.top.score > last.top.score else last.images
            merged[-1] = replace(last, end_s=max(last.end_s, window.end_s),
                                 species=sorted(best.values(), key=lambda h: -h.score), images=images)
        else:
            merged.append(replace(window, index=len(merged)))
    return merged

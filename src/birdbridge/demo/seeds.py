"""``birdbridge demo --seeds N``: the demo on seeds S..S+N-1, each into ``OUT/seed<K>/``, then every figure of every
method as mean ± sd with a 95% Student-t interval over the seeds (``OUT/seeds.json``, ``OUT/seeds.md``).

A seed whose ``results.json`` is complete is not run again, so an interrupted run resumes at the next seed; one
that is unreadable, incomplete or from other settings is run again. A seed that fails is reported and the others
are kept. Orderings of methods are stated apart: those that hold on every seed, and those that flip (with how many
seeds each way). A check passes only if it passes on every seed; a report says on how many seeds it held.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from birdbridge.demo.checks import checks_and_reports
from birdbridge.demo.report import METRICS, SOUNDSCAPE_METRICS
from birdbridge.demo.run import PIVOTS, WITH_BACKGROUND, DemoSettings, run_demo
from birdbridge.errors import BirdbridgeError
from birdbridge.evaluate.results import DISTILLED, GROUPS
from birdbridge.experiment.table import SEEDS_CI, Cell, seed_cell
from birdbridge.utils.atomic import json_text, write_json, write_text

BASELINES = ("random_projection", "text_mapping", "zero_shot_chain", "undistilled")
FRAME_SHARE = "bird frame share"  # the section of how often a student's nearest (random) frame shows the bird, %
SECTIONS = {  # section -> (title, headline metrics)
    "clips": ("Clips: audio→image retrieval and friends", METRICS),
    **{g: (f"{g.capitalize()} species", METRICS) for g in GROUPS},
    FRAME_SHARE: ("How often a frame of the window shows the bird (%)",
                  [("nearest", "nearest frame"), ("random", "random frame")]),
    "soundscapes default": ("Soundscapes, default threshold", SOUNDSCAPE_METRICS),
    "soundscapes low": ("Soundscapes, low threshold", SOUNDSCAPE_METRICS[3:]),
}
SHOWN_ORDERINGS = {"clips": "a2i_map", "seen": "a2i_map", "unseen": "a2i_map",
                   "soundscapes default": "cmap"}  # the orderings seeds.md states (seeds.json has every headline's)


def seed_folder(out: str | Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def run_seeds(out: str | Path, settings: DemoSettings, n: int, progress: bool | None = None,
              log=print) -> dict[str, Any]:
    """Run (or resume) the demo on ``n`` seeds from ``settings.seed`` and write ``seeds.json`` and ``seeds.md``."""
    if n < 1:
        raise BirdbridgeError(f"--seeds must be at least 1, not {n}")
    out = Path(out)
    per_seed: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    for i, seed in enumerate(range(settings.seed, settings.seed + n)):
        folder, seeded = seed_folder(out, seed), replace(settings, seed=seed)
        results, problem = load_seed(folder, seeded)
        if results is not None:
            log(f"[seeds] seed {seed} ({i + 1} of {n}): complete in {folder / 'results.json'}, not run again")
            per_seed[seed] = results
            continue
        log(f"[seeds] seed {seed} ({i + 1} of {n}) into {folder}" + (f"; run again: {problem}" if problem else ""))
        try:
            per_seed[seed] = run_demo(folder, seeded, progress=progress, log=log)
        except Exception as exc:  # a batch: one seed's failure is reported, the other seeds are kept
            failed[seed] = f"{type(exc).__name__}: {exc}"
            log(f"[seeds] seed {seed} failed: {failed[seed]}")
    if not per_seed:
        raise BirdbridgeError(f"no seed finished in {out}: " + "; ".join(f"seed {s}: {m}" for s, m in failed.items()))
    summary = aggregate(per_seed, {seed: str(seed_folder(out, seed) / "results.json") for seed in per_seed})
    summary["failed"] = {str(seed): message for seed, message in failed.items()}
    summary["settings"] = asdict(settings)
    write_json(out / "seeds.json", summary)
    write_text(out / "seeds.md", markdown(summary))
    return summary


def load_seed(folder: Path, settings: DemoSettings) -> tuple[dict[str, Any] | None, str | None]:
    """A seed's complete ``results.json`` mapping, or None and why it cannot be used (None, None: not run yet)."""
    path = folder / "results.json"
    if not path.exists():
        return None, None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{path} is not readable JSON ({exc})"
    problem = _incomplete(results, settings)
    return (None, f"{path} {problem}") if problem else (results, None)


def _incomplete(results: Any, settings: DemoSettings) -> str | None:
    """What ``results`` lacks for ``settings`` (None: nothing)."""
    if not isinstance(results, dict) or not isinstance(results.get("methods"), dict):
        return "has no methods"
    recorded = results.get("demo_settings")  # results written before it was recorded are judged by their contents
    if recorded is not None and recorded != json.loads(json_text(asdict(settings))):
        return "was written with other settings"
    needed = {DISTILLED, *BASELINES, *([WITH_BACKGROUND] if settings.soundscapes else []),
              *(PIVOTS if settings.pivots else [])}
    if missing := sorted(needed - set(results.get("method_ids") or {})):
        return f"lacks the methods {', '.join(missing)}"
    sections = ["checks", "figures", *(["bird_frame_share"] if settings.pivots else []),
                *(["soundscapes"] if settings.soundscapes else []), *(["groups"] if settings.holdout else [])]
    if missing := [key for key in sections if key not in results]:
        return f"lacks {', '.join(missing)}"
    try:
        checks_and_reports(results)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"has figures that cannot be judged ({type(exc).__name__}: {exc})"
    return None


def figures(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """A demo's figures by section, method (display name) and metric: the numbers seeds are averaged over
    (``directions``: each retrieval direction's MAP at species, genus and family rank, in seeds.json only)."""
    sections = {"clips": results["methods"]}
    if "directions" in results:
        sections["directions"] = results["directions"]["methods"]
    for group in GROUPS if "groups" in results else ():
        sections[group] = results["groups"][group]["methods"]
    if shares := results.get("bird_frame_share"):
        sections[FRAME_SHARE] = {name: {k: 100 * s[k] for k in ("nearest", "random")} for name, s in shares.items()}
    for key, scapes in results.get("soundscapes", {}).items():
        sections[f"soundscapes {key}"] = scapes["methods"]
    return {section: {method: {metric: math.nan if value is None else float(value)
                               for metric, value in values.items()
                               if value is None or (isinstance(value, int | float) and not isinstance(value, bool))}
                      for method, values in methods.items()}
            for section, methods in sections.items()}


def _union(keys) -> list[str]:
    return list(dict.fromkeys(k for ks in keys for k in ks))


def aggregate(per_seed: dict[int, dict[str, Any]], paths: dict[int, str] | None = None) -> dict[str, Any]:
    """Every figure as mean, sd, 95% t interval over seeds; the orderings that hold and flip; checks and reports."""
    seeds = sorted(per_seed)
    flat = [figures(per_seed[seed]) for seed in seeds]
    sections: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for section in _union(f.keys() for f in flat):
        methods = _union(f.get(section, {}).keys() for f in flat)
        sections[section] = {method: {metric: _cell_json(seed_cell(
            [f.get(section, {}).get(method, {}).get(metric, math.nan) for f in flat]))
            for metric in _union(f.get(section, {}).get(method, {}).keys() for f in flat)} for method in methods}
    orderings = {section: {key: ordering({method: cells[key]["values"] for method, cells in methods.items()
                                          if key in cells})
                           for key, _ in SECTIONS.get(section, ("", []))[1]
                           if any(key in cells for cells in methods.values())}
                 for section, methods in sections.items()}
    claims: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        for kind, findings in zip(("check", "report"), checks_and_reports(per_seed[seed]), strict=True):
            for f in findings:
                entry = claims.setdefault(f.claim, {"kind": kind, "seeds": [], "holds": [], "figures": []})
                entry["seeds"].append(seed)
                entry["holds"].append(f.holds)
                entry["figures"].append(f.figures)
    return {"seeds": seeds, "results": {str(s): p for s, p in (paths or {}).items()}, "ci": SEEDS_CI,
            "sections": sections, "orderings": orderings,
            "checks": {c: {**e, "passed": all(e["holds"])} for c, e in claims.items() if e["kind"] == "check"},
            "reports": {c: e for c, e in claims.items() if e["kind"] == "report"}}


def _cell_json(cell: Cell) -> dict[str, Any]:
    return {"mean": cell.mean, "sd": cell.sd, "ci": list(cell.ci) if cell.ci else None,
            "n": sum(not math.isnan(v) for v in cell.values), "values": cell.values}


def ordering(values: dict[str, list[float]]) -> dict[str, Any]:
    """The methods with a figure on every seed, ``ranked`` by mean; of every pair of them, ``hold`` lists those in
    the same order on every seed ([higher, lower]), ``flip`` the others with how many seeds put each first (and
    ties)."""
    complete = {m: v for m, v in values.items() if v and not any(math.isnan(x) for x in v)}
    ranked = sorted(complete, key=lambda m: -sum(complete[m]))
    hold, flip = [], []
    for i, a in enumerate(ranked):
        for b in ranked[i + 1:]:
            above = sum(x > y for x, y in zip(complete[a], complete[b], strict=True))
            below = sum(x < y for x, y in zip(complete[a], complete[b], strict=True))
            if above == len(complete[a]):
                hold.append([a, b])
            elif below == len(complete[a]):
                hold.append([b, a])
            else:
                flip.append({"methods": [a, b], "seeds": [above, below], "ties": len(complete[a]) - above - below})
    return {"ranked": ranked, "hold": hold, "flip": flip}


def markdown(summary: dict[str, Any]) -> str:
    """``seeds.md``: the tables, the orderings on every seed and those that flip, the checks and the reports."""
    n = len(summary["seeds"])
    lines = [f"# birdbridge demo on {n} seed{'s' * (n != 1)}", "",
             f"Seeds {', '.join(map(str, summary['seeds']))} (each in `seed<K>/`). ×100; mean ± sd [{SEEDS_CI}].", ""]
    for section, methods in summary["sections"].items():
        title, metrics = SECTIONS.get(section, (section, []))
        used = [(key, label) for key, label in metrics if any(key in cells for cells in methods.values())]
        if not used:
            continue
        lines += [f"## {title}", "", "| method | " + " | ".join(label for _, label in used) + " |",
                  "|---|" + "---:|" * len(used)]
        lines += [f"| {method} | " + " | ".join(_text(cells.get(key), n) for key, _ in used) + " |"
                  for method, cells in methods.items() if any(key in cells for key, _ in used)]
        lines.append("")
    lines += ["## Orderings", ""]
    for section, key in SHOWN_ORDERINGS.items():
        if (found := summary["orderings"].get(section, {}).get(key)) is None:
            continue
        label = dict(SECTIONS[section][1])[key]
        lines += [f"{SECTIONS[section][0]}, {label}:", "", *ordering_lines(found, n), ""]
    lines += ["## Checks (a check passes only if it passes on every seed)", "",
              *[f"- {'pass' if c['passed'] else 'FAIL'} ({sum(c['holds'])} of {len(c['holds'])}): {claim}"
                f" ({'; '.join(c['figures'])})" for claim, c in summary["checks"].items()], "",
              "## Reports (orderings one seed shows and another may not)", "",
              *[f"- on {sum(r['holds'])} of {len(r['holds'])} seeds: {claim} ({'; '.join(r['figures'])})"
                for claim, r in summary["reports"].items()], ""]
    if summary.get("failed"):
        lines += ["## Failed seeds", "", *[f"- seed {s}: {m}" for s, m in summary["failed"].items()], ""]
    return "\n".join(lines)


def ordering_lines(found: dict[str, Any], n: int) -> list[str]:
    """The methods by mean, ``>`` between neighbours in that order on every seed and ``≷`` between others; then
    every pair whose order differs across seeds (any pair not listed keeps the order of its means on every seed)."""
    held, ranked = {tuple(pair) for pair in found["hold"]}, found["ranked"]
    chain = ranked[:1] + [f"{'>' if (a, b) in held else '≷'} {b}" for a, b in pairwise(ranked)]
    lines = [f"- by mean: {' '.join(chain)}"] if ranked else []
    lines += [f"- not in one order on every seed: {a} vs {b}: {a} higher on {x}, {b} higher on {y}"
              + (f", tied on {f['ties']}" if f["ties"] else "") for f in found["flip"]
              for (a, b), (x, y) in [(f["methods"], f["seeds"])]]
    if not ranked:
        return [f"- no method with this figure on all {n} seeds"]
    return [*lines, f"- every {'other ' if found['flip'] else ''}pair in the order of its means on all {n} seeds"]


def _text(cell: dict[str, Any] | None, seeds: int) -> str:
    """A cell of seeds.md; a figure that some seeds lack (undefined there, or not measured) says on how many."""
    if cell is None:
        return "—"
    text = Cell(cell["values"], cell["mean"], cell["sd"], tuple(cell["ci"]) if cell["ci"] else None, None).text()
    return text if cell["n"] in (0, seeds) else f"{text} ({cell['n']} of {seeds} seeds)"


__all__ = ["aggregate", "figures", "load_seed", "markdown", "ordering", "run_seeds", "seed_folder"]

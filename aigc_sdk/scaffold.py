"""`aigc plugin new NAME`: a ready-to-install plugin package, like a cookiecutter."""

from __future__ import annotations

import keyword
from pathlib import Path

from .errors import AigcError

TEMPLATES = Path(__file__).parent / "templates" / "plugin"
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "aigc_{name}/__init__.py",
    "generator.py.tmpl": "aigc_{name}/generator.py",
    "test_plugin.py.tmpl": "tests/test_plugin.py",
}


def new_plugin(name: str, parent: Path) -> Path:
    """Writes ``parent/aigc-NAME`` and returns its path; never overwrites."""
    if not name.isidentifier() or keyword.iskeyword(name) or not name.islower():
        raise AigcError(f"plugin name must be a lowercase Python identifier, got {name!r}")
    root = parent / f"aigc-{name}"
    if root.exists():
        raise AigcError(f"{root} already exists; choose another name or --dir")
    values = {"name": name, "cls": "".join(part.title() for part in name.split("_"))}
    for template, target in LAYOUT.items():
        path = root / target.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((TEMPLATES / template).read_text().format(**values))
    return root

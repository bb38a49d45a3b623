"""``aigc plugins [--json] [-v]``: what each installed plugin provides, and
``aigc plugin new NAME [--dir DIR]``: a ready-to-install plugin package, like a
cookiecutter."""

from __future__ import annotations

import argparse
import importlib.util
import json
import keyword
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import AigcError, UserError
from ..generation import request_schema
from .common import make_sdk

# The templates are package data of aigc_sdk (pyproject.toml), beside this package.
TEMPLATES = Path(__file__).parent.parent / "templates" / "plugin"
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


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "plugins", help="list installed plugins and what they provide", allow_abbrev=False
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the full traceback of each failure"
    )

    p = sub.add_parser("plugin", help="plugin authoring tools", allow_abbrev=False)
    plugin_sub = p.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser(
        "new", help="write a ready-to-install plugin package", allow_abbrev=False
    )
    new.add_argument("name", help="plugin name, e.g. 'noise' (package aigc_noise)")
    new.add_argument("--dir", default=".", help="where to create the package directory")


# -- aigc plugins ------------------------------------------------------------


def cmd_plugins(args: argparse.Namespace) -> int:
    sdk = make_sdk(args)
    infos = sdk.plugins()
    if args.json:
        listed = [info.as_dict(tracebacks=args.verbose) for info in infos]
        for plugin in listed:
            for detail in plugin["generator_details"]:
                detail.update(_request_description(sdk, detail["name"]))
        print(json.dumps(listed, indent=2))
        return 0
    if not any(info.status == "loaded" for info in infos) and not sdk.autoload:
        from ..plugins import entry_points

        installed = ", ".join(ep.name for ep in entry_points()) or "none"
        print(
            "no plugins loaded: plugin autoload is off (AIGC_DISABLE_PLUGIN_AUTOLOAD); name "
            f"the plugins to load in AIGC_PLUGINS=a,b (installed: {installed})"
        )
    elif not infos:
        print("no plugins installed (entry-point group aigc_sdk.plugins)")
    for info in infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else info.module
        print(f"{info.name}  [{info.status}]  {origin or ''}".rstrip())
        for kind, details in (
            ("generators", info.generator_details),
            ("trainers", info.trainer_details),
        ):
            if details:
                print(f"  {kind}:")
                _print_table([d["name"], d.get("modality", ""), d["description"]] for d in details)
        if info.hooks:
            print(f"  hooks:      {', '.join(info.hooks)}")
        for error in info.errors:
            print(f"  error:      {error}")
            if args.verbose and error in info.tracebacks:
                print(textwrap.indent(info.tracebacks[error].rstrip(), " " * 6))
    return 0


def _request_description(sdk, name: str) -> dict[str, Any]:
    """``{"request": schema}`` of a generator for ``aigc plugins --json``, without loading
    weights: ``null`` when only an instance could tell, ``request_error`` when it fails."""
    try:
        request_type = sdk.generators.get(name).request_type()
        if request_type is None:
            return {"request": None}
        return {"request": request_schema(request_type, sdk.limits_for(name))}
    except AigcError as exc:
        return {"request": None, "request_error": str(exc)}


def _print_table(rows: Iterable[list[str]]) -> None:
    """Rows as aligned columns under a section of ``aigc plugins``; empty columns dropped."""
    rows = list(rows)
    columns = [i for i in range(len(rows[0])) if any(row[i] for row in rows)]
    widths = {i: max(len(row[i]) for row in rows) for i in columns}
    for row in rows:
        cells = [row[i] if i == columns[-1] else row[i].ljust(widths[i]) for i in columns]
        print(("    " + "  ".join(cells)).rstrip())


# -- aigc plugin new ---------------------------------------------------------


def cmd_plugin_new(args: argparse.Namespace) -> int:
    path = new_plugin(args.name, Path(args.dir))
    print(f"created {path}")
    print(f"install it with: pip install -e {path}   then: aigc plugins")
    return 0


def _clash(name: str) -> str | None:
    """What installed already answers to the names the new package would take, if anything."""
    from importlib import metadata

    from ..plugins import entry_points

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

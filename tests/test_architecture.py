"""ARCHITECTURE.md stays true where a machine can check it cheaply: every repository path
it names exists, and its import rules hold. Imports are read from the sources with `ast`
(nothing is imported): every import statement counts, inside functions too, and an `arnn`
module's imports are followed through `arnn`'s own modules and the packages they sit in."""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "platform"
MAP = ROOT / "ARCHITECTURE.md"
# A backticked repository path: under one of these folders, or one of these files.
FOLDERS = ("platform/", "tests/", "reproduce/", "search_spaces/", "docs/")
FILES = ("Makefile", "cluster.yaml", "pyproject.toml", "README.md", "ARCHITECTURE.md")
BACKTICKED = re.compile(r"`([^`\s]+)`")
TEMPLATE = re.compile(r"[<>*{}]")  # search_spaces/<specs>/table<id>_...: a pattern, not a file
FORBIDDING = "| module | must not import |"
ONLY_BY = "| library | imported only by |"
# An MLflow tag of ours as the code spells it: a whole string, or a runs frame's column.
TAG_LITERAL = re.compile(r"^(?:tags\.)?(arnn\.[a-z_]+(?:\.[a-z_]+)*)$")
TAG_PREFIX = re.compile(r"^(?:tags\.)?(arnn\.[a-z_.]*\.)$")  # f"arnn.version.{name}"
LEAVES = "**Leaves**"
AT_IMPORT = "at import"  # a rule about what loading the module imports, not its functions
STANDARD = set(sys.stdlib_module_names) | {"__future__"}


# ------------------------------------------------------------------ reading the map


def named_paths(text: str) -> list[str]:
    """The repository paths the text names in backticks (patterns left out)."""
    names = BACKTICKED.findall(text)
    return [
        name
        for name in names
        if (name.startswith(FOLDERS) or name in FILES) and not TEMPLATE.search(name)
    ]


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the table whose header line starts with `header`."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"ARCHITECTURE.md has {len(starts)} tables headed {header!r}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # past the header and its |---| line
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def leaf_paths(text: str) -> list[str]:
    """The paths of the paragraph that starts with **Leaves**."""
    paragraphs = text.split("\n\n")
    found = [p for p in paragraphs if p.startswith(LEAVES)]
    assert len(found) == 1, "ARCHITECTURE.md has no (or several) **Leaves** paragraphs"
    return named_paths(found[0])


# ------------------------------------------------------------------ reading the sources


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    """The file of module `name` under platform/, or None (a third-party or missing one)."""
    base = SOURCE.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def is_function(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)


def import_nodes(tree: ast.AST, at_import: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement; with `at_import`, only those that run when the module loads
    (none inside a function)."""
    found, pending = [], [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            if not (at_import and is_function(child)):
                pending.append(child)
    return found


def imported_names(path: Path, at_import: bool = False) -> set[str]:
    """Dotted names `path` imports: `import a.b` gives a.b, `from a import b` gives a and,
    where a.b is a module of ours, a.b too; relative imports resolved."""
    package = module_name(path).split(".") if path.is_relative_to(SOURCE) else []
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in import_nodes(ast.parse(path.read_text(), str(path)), at_import):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
            continue
        base = node.module or ""
        if node.level:
            base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
        names.add(base)
        names |= {
            f"{base}.{alias.name}"
            for alias in node.names
            if module_path(f"{base}.{alias.name}") is not None
        }
    return names


def enclosing(name: str) -> list[str]:
    """a.b.c -> a, a.b, a.b.c: importing a module runs its packages first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@cache
def reached(path: Path, at_import: bool = False) -> frozenset[str]:
    """Everything importing `path` imports, through arnn's own modules."""
    seen_modules: set[Path] = set()
    names: set[str] = set()
    pending = [path]
    while pending:
        current = pending.pop()
        if current in seen_modules:
            continue
        seen_modules.add(current)
        for name in imported_names(current, at_import):
            for step in enclosing(name):
                names.add(step)
                found = module_path(step)
                if found is not None:
                    pending.append(found)
    return frozenset(names)


def python_files(path: str) -> list[Path]:
    """The .py files of a path the map names: one file, or every file of a folder."""
    target = ROOT / path
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files and all(f.is_file() for f in files), f"{path}: no Python files there"
    return files


def package_and_scripts() -> list[Path]:
    """Every Python file of the package and of reproduce/."""
    return sorted((ROOT / "platform" / "arnn").rglob("*.py")) + sorted(
        (ROOT / "reproduce").glob("*.py")
    )


def breaks(names: frozenset[str] | set[str], forbidden: str) -> list[str]:
    """The imported names that `forbidden` forbids: itself and its submodules."""
    return sorted(n for n in names if n == forbidden or n.startswith(forbidden + "."))


def tag_names(path: Path) -> set[str]:
    """The arnn.* tag names a source spells: whole string literals, and the head of an
    f-string that only appends a name (`arnn.version.*`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.JoinedStr) and len(node.values) == 2:
            head = node.values[0]
            prefix = isinstance(head, ast.Constant) and TAG_PREFIX.match(str(head.value))
            if prefix:
                names.add(prefix.group(1) + "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            whole = TAG_LITERAL.match(node.value)
            if whole:
                names.add(whole.group(1))
    return names


# ------------------------------------------------------------------ the map itself


@pytest.fixture(scope="module")
def text() -> str:
    return MAP.read_text()


def test_every_path_the_map_names_exists(text):
    paths = named_paths(text)
    assert len(paths) > 50, "the path pattern no longer finds the map's paths"
    missing = sorted({p for p in paths if not (ROOT / p).exists()})
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_what_modules_must_not_import(text):
    rows = table_rows(text, FORBIDDING)
    assert len(rows) >= 10, rows
    broken = []
    for where, forbidden, _why in rows:
        (path,) = named_paths(where)
        at_import = AT_IMPORT in where
        for file in python_files(path):
            imported = reached(file, at_import)
            for name in BACKTICKED.findall(forbidden):
                broken += [f"{file.relative_to(ROOT)} imports {n}" for n in breaks(imported, name)]
    assert not broken, "ARCHITECTURE.md's import rules are broken: " + "; ".join(broken)


def test_the_leaves_import_only_the_standard_library(text):
    leaves = leaf_paths(text)
    assert len(leaves) >= 5, leaves
    found = {
        path: sorted(n for n in imported_names(ROOT / path) if n.split(".")[0] not in STANDARD)
        for path in leaves
    }
    offenders = {path: names for path, names in found.items() if names}
    assert not offenders, f"leaves that import more than the standard library: {offenders}"


def test_each_heavy_library_is_imported_by_exactly_its_adapters(text):
    rows = table_rows(text, ONLY_BY)
    assert len(rows) >= 4, rows
    sources = package_and_scripts()
    wrong = {}
    for library_cell, importers_cell in rows:
        (library,) = BACKTICKED.findall(library_cell)
        listed = set(named_paths(importers_cell))
        actual = {
            file.relative_to(ROOT).as_posix()
            for file in sources
            if breaks(imported_names(file), library)
        }
        if actual != listed:
            wrong[library] = {"unlisted": sorted(actual - listed), "gone": sorted(listed - actual)}
    assert not wrong, f"ARCHITECTURE.md's adapters table is out of date: {wrong}"


def test_every_tag_is_spelled_in_the_record_schema_alone():
    """platform/arnn/record.py is the schema of what the platform writes to MLflow: no
    other module of the package or of reproduce/ spells a tag name."""
    schema = ROOT / "platform" / "arnn" / "record.py"
    assert len(tag_names(schema)) > 30, "the tag pattern no longer finds the schema's tags"
    elsewhere = {
        file.relative_to(ROOT).as_posix(): sorted(tag_names(file))
        for file in package_and_scripts()
        if file != schema and tag_names(file)
    }
    assert not elsewhere, f"tags spelled outside arnn.record: {elsewhere}"


def test_no_module_uses_mlflows_global_run():
    """The map's invariant: MLflow only through an explicit MlflowClient, so no module
    imports the `mlflow` package itself (`import mlflow`, `from mlflow import ...`)."""
    sources = package_and_scripts()
    offenders = []
    for file in sources:
        for node in import_nodes(ast.parse(file.read_text()), at_import=False):
            plain = isinstance(node, ast.Import) and any(a.name == "mlflow" for a in node.names)
            if plain or (isinstance(node, ast.ImportFrom) and node.module == "mlflow"):
                offenders.append(f"{file.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


# ------------------------------------------------------------------ the checks can fail


def test_the_checks_see_a_missing_path_and_an_import_in_a_function():
    """What the checks above rely on: a missing path is told apart, and an import inside a
    function counts unless only what runs at import is asked for."""
    assert named_paths("`platform/arnn/nowhere.py` and `search_spaces/<specs>/x.yaml`") == [
        "platform/arnn/nowhere.py"
    ]
    assert not (ROOT / "platform/arnn/nowhere.py").exists()
    cli = ROOT / "platform" / "arnn" / "cli.py"
    assert breaks(reached(cli), "arnn.train"), "cli.py's commands import the trainer"
    assert not breaks(reached(cli, at_import=True), "arnn.train")
    assert breaks(reached(ROOT / "platform" / "arnn" / "sweep" / "driver.py"), "ray")

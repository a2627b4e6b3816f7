"""The project cites only documents it has: no file points at the specs the project was
written from (which live outside the repository), and every `docs/...` path a file cites
exists. Reads the files git knows (tracked, and new ones not ignored)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples are bad on purpose
# Documents outside the repository that files once cited: a user has none of them.
FOREIGN = ("PAPER.md", "SUCCESSORS.md", "STACK.md", "DESIGN.md", "STYLE.md", "shared/docs")
# Where citing their names is not a citation: the tests (this file names them).
NOT_CHECKED_FOR_FOREIGN = ("tests/",)
# A repository-relative path under docs/: not part of a longer path or of a URL.
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*\w")


def repository_files() -> list[str]:
    """Paths (relative to the root) of the files git tracks or would add, that exist,
    other than this one."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = {path for path in listed.split("\0") if path and (ROOT / path).is_file()}
    return sorted(paths - {THIS_FILE})


def text_lines(root: Path, path: str) -> list[str]:
    data = (root / path).read_bytes()
    if b"\0" in data[:8192]:  # binary
        return []
    return data.decode("utf-8", errors="replace").splitlines()


def foreign_citations(root: Path, files: list[str]) -> list[str]:
    """`path:line: cites NAME` for each mention of a foreign document outside the tests."""
    found = []
    for path in files:
        if path.startswith(NOT_CHECKED_FOR_FOREIGN):
            continue
        for number, line in enumerate(text_lines(root, path), 1):
            found += [f"{path}:{number}: cites {name}" for name in FOREIGN if name in line]
    return found


def missing_docs(root: Path, files: list[str]) -> list[str]:
    """`path:line: cites docs/X, which does not exist` for each cited docs/ path not there."""
    missing = []
    for path in files:
        for number, line in enumerate(text_lines(root, path), 1):
            for cited in DOCS_PATH.findall(line):
                cited = cited.rstrip(".")
                if not (root / cited).exists():
                    missing.append(f"{path}:{number}: cites {cited}, which does not exist")
    return missing


def test_no_file_cites_a_document_outside_the_repository():
    assert foreign_citations(ROOT, repository_files()) == []


def test_every_cited_docs_path_exists():
    assert missing_docs(ROOT, repository_files()) == []


def test_the_checks_see_what_they_look_for(tmp_path):
    """Both checks find a bad citation (so an empty answer above means something)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "models.md").write_text("x\n")
    (tmp_path / "a.py").write_text(
        '"""See ../shared/docs/PAPER.md, docs/models.md and docs/gone.md."""\n'
        "# https://example.org/docs/elsewhere.md is a URL, not ours\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("# SUCCESSORS.md named in a test\n")
    files = ["a.py", "tests/t.py"]
    assert foreign_citations(tmp_path, files) == [
        "a.py:1: cites PAPER.md",
        "a.py:1: cites shared/docs",
    ]
    assert missing_docs(tmp_path, files) == ["a.py:1: cites docs/gone.md, which does not exist"]

"""The README and the manual: short README with the two commands on top, links that resolve, a current reference."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # no headings inside code blocks
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_readme_is_short_and_opens_with_the_two_commands_ci_runs() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    block = lines[lines.index("```bash") + 1 : lines.index("```")]
    assert lines.index("```bash") <= 3, "the two commands belong at the README's very top"
    assert [line.split("#")[0].strip() for line in block] == ["make study", "make test"]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == "make test", ".ci/run must run the README's test command"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^study: ", makefile, flags=re.MULTILINE) and re.search(r"^test: ", makefile, flags=re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http(s), mailto
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_no_page_points_outside_the_repository() -> None:
    for page in PAGES:
        assert "/work/" not in page.read_text(), f"{page.relative_to(ROOT)} names a path outside the repository"


def test_configuration_reference_is_generated_from_the_current_schemas() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "make_configuration.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    reference = (ROOT / "docs" / "configuration.md").read_text()
    for key in (
        "`scale`",
        "`datasets.<name>.split.fractions`",
        "`study.folds`",
        "`train.gan.iterations`",
        "`datasets.<name>.source.collection [kind: tcia]`",
    ):
        assert f"| {key} |" in reference, f"{key} is missing from docs/configuration.md"

"""The README and docs/: every relative link resolves, no file cites a document the project does not hold,
the front page stays one, and its results table is what reports/ say."""
import re
import subprocess

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CITED = "FACTS" ".md"  # notes the project's authors had, not the project's (in two pieces: this file cites nothing)


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (but - and _), spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a `# comment` in a code block is no heading
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    links = [m.group(1) for m in LINK.finditer(page.read_text())]
    assert links or page.name != "README.md"
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.is_file(), f"{page.name}: link to {link}: no such file"
        if anchor:
            assert anchor in _anchors(target), f"{page.name}: link to {link}: no such heading in {target.name}"


def test_no_tracked_file_cites_a_document_the_project_does_not_hold():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".yaml", ".txt", ".ini", "") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        missing += [f"{name}: {CITED}" for _ in re.findall(re.escape(CITED), text)]
        missing += [f"{name}: {doc}" for doc in re.findall(r"\bdocs/[\w-]+\.md", text) if not (ROOT / doc).is_file()]
    assert not missing


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    # its first screen: what it is, then the two commands
    first = "\n".join(lines[:25])
    assert "make repro" in first and "make test" in first and "unlabeled images" in first


def _table(text, header):
    """The rows (lists of cells) of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_the_readme_results_are_those_of_reports_methods_md():
    readme = _table((ROOT / "README.md").read_text(), "| method | acc | mIoU |")
    reports = _table((ROOT / "reports/methods.md").read_text(), "| method | settings |")
    # methods.md's row of each method with no settings but the method's own (params.yaml, `method=x`)
    plain = [[method, *cells[:4]] for method, settings, *cells in reports
             if settings == "params.yaml" or re.fullmatch(r"`method=\w+`", settings)]
    assert readme == plain

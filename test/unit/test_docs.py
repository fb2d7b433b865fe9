"""docs/ stays a consistent reference: no machine's absolute paths, every page and every raw run
indexed, and every relative link pointing at a file that exists (docs/README.md says why)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNS = DOCS / "runs"

# A path that names a machine's layout: /work/..., /root/..., /tmp/..., /home/... The look-behind
# keeps relative paths (out/tmp/x) and URLs (https://host/home/x) out.
MACHINE_PATH = re.compile(r"(?<![\w./~-])/(?:work|root|tmp|home)/")
TEXT_SUFFIXES = {".md", ".json", ".txt", ".yaml", ".yml", ".csv", ".py", ".sh"}
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def machine_paths(text):
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def relative_links(markdown):
    """Link and image targets outside code, without URLs and pure anchors."""
    prose = INLINE_CODE.sub("", FENCE.sub("", markdown))
    targets = []
    for target in LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def test_machine_path_pattern():
    assert machine_paths('"model": "/work/main/models/x.pt"') == ["/work/"]
    assert machine_paths("pisr-ros synth --out /tmp/cs") == ["/tmp/"]
    assert machine_paths("see /home/user/x and /root/y") == ["/home/", "/root/"]
    assert machine_paths("out/tmp/x, https://example.org/home/x, ~/work/x, models/work/x") == []


def test_relative_links_skip_code_urls_and_anchors():
    text = ("[a](a.md) ![b](img/b.png) [c](https://x.org/c) [d](#d) `[e](e.md)` [f](f.md#sec)\n"
            "```\n[g](g.md)\n```\n")
    assert relative_links(text) == ["a.md", "img/b.png", "f.md"]


def test_no_machine_absolute_paths_in_docs():
    found = []
    for path in sorted(DOCS.rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES:
            for hit in machine_paths(path.read_text(encoding="utf-8")):
                found.append(f"{path.relative_to(ROOT)}: {hit}")
    assert not found, "absolute machine paths in docs/ (write them relative to the repository):\n" + "\n".join(found)


def test_every_run_file_is_described_in_runs_readme():
    readme = (RUNS / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([\w.-]+\.\w+)`", readme))
    files = {p.name for p in RUNS.iterdir() if p.is_file() and p.name != "README.md"}
    assert files, "docs/runs/ holds no runs"
    assert not sorted(files - named), f"files in docs/runs/ not described in its README: {sorted(files - named)}"
    listed_runs = {n for n in named if n.endswith((".json", ".txt"))}
    assert not sorted(listed_runs - files), f"docs/runs/README.md names missing files: {sorted(listed_runs - files)}"


def test_every_page_is_in_the_docs_index():
    index = relative_links((DOCS / "README.md").read_text(encoding="utf-8"))
    pages = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
    assert pages
    missing = [p for p in pages if p not in index]
    assert not missing, f"docs/README.md does not list: {missing}"


MARKDOWN = sorted([ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "models").glob("*.md")])


@pytest.mark.parametrize("page", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = [t for t in relative_links(page.read_text(encoding="utf-8"))
              if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"

"""The README is a user's path: short, no repeated lines, no pasted progress bars, nothing
written from a developer's machine, the two set-up commands, and links that resolve (in the
README and in docs/)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 250

#: Lines that are only Markdown punctuation: code fences (with or without a language), table
#: separators, rules and the like may repeat.
PUNCTUATION_ONLY = re.compile(r"^(```[\w+-]*|[\s|:\-=*_#>`~.]*)$")
#: Output of progress bars (tqdm, rich) pasted from a terminal.
PROGRESS_BAR = [
    re.compile(r"━━━"),
    re.compile(r"it/s\]"),
    re.compile(r"%\|"),
    re.compile(r"[█▌▏▎▍▋▊▉]{2,}"),
    re.compile(r"\d+/\d+ \[\d+:\d\d<"),  # tqdm's "3/40 [00:01<00:02"
]
#: Sentences written from the developer's machine instead of the reader's ("on a 2-core CPU"
#: says where a figure came from; "this machine" is the writer's, not the reader's).
DEVELOPER_MACHINE = re.compile(
    r"\bthis (\d+-core )?(machine|cpu)\b|\bthese machines\b|\bour machines?\b"
    r"|\bno gpu was available\b",
    re.I,
)
#: [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(_lines(path), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    anchors = set()
    for _, line in _prose_lines(path):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return anchors


def _relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in _prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
                continue
            links.append((number, target))
    return links


def test_readme_is_at_most_250_lines():
    n = len(_lines(README))
    assert n <= MAX_LINES, f"README.md has {n} lines; at most {MAX_LINES}"


def test_no_line_of_the_readme_appears_twice():
    counts = Counter(
        line.strip()
        for line in _lines(README)
        if line.strip() and not PUNCTUATION_ONLY.match(line.strip())
    )
    repeated = {line: n for line, n in counts.items() if n > 1}
    assert not repeated, f"lines repeated in README.md: {repeated}"


def test_the_readme_holds_no_progress_bar_output():
    bars = [
        f"{number}: {line}"
        for number, line in enumerate(_lines(README), 1)
        if any(p.search(line) for p in PROGRESS_BAR)
    ]
    assert not bars, "progress-bar output in README.md:\n" + "\n".join(bars)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_written_for_the_readers_machine(path):
    text = " ".join(path.read_text(encoding="utf-8").split())  # phrases across line breaks
    found = sorted({m.group(0) for m in DEVELOPER_MACHINE.finditer(text)})
    assert not found, f"{path.name} speaks of the developer's machine: {found}"


def test_the_readme_gives_the_two_set_up_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text
    # and the Makefile has them
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_that_exist(path):
    broken = []
    for number, target in _relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{number}: {target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"broken links in {path.name}:\n" + "\n".join(broken)


def test_the_link_checker_sees_links():
    """The checks above would pass vacuously if the link pattern found nothing."""
    targets = [t for _, t in _relative_links(README)]
    assert "docs/napari_view.png" in targets
    assert "docs/cli.md" in targets
    assert _slug("Training: what was chosen and what it costs") == (
        "training-what-was-chosen-and-what-it-costs"
    )
    assert _slug("The paper's synthetic experiment") == "the-papers-synthetic-experiment"


def test_the_readmes_python_examples_run_as_printed(tmp_path, monkeypatch):
    """Every ``python`` block of the README, in order, in a folder holding a small imaging
    session named as the README names it (``session.nwb``, with DfOverF and accepted ROIs)."""
    import warnings

    from nwb_facrnn import read_results
    from nwb_facrnn.synthetic import make_imaging_session

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3, "the README lost its Python examples"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_imaging_session(
            tmp_path / "session.nwb", seed=0, n_rois=12, frame_shape=(48, 48), duration=0.3
        )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    names = [
        read_results("session_facrnn.nwb", name=n).name
        for n in ("facrnn_G2H3_beta20_seed0", "facrnn_G2H3_beta20_seed1")
    ]
    assert names == ["facrnn_G2H3_beta20_seed0", "facrnn_G2H3_beta20_seed1"]
    assert namespace["z"].shape[1] == 6 and len(namespace["table"]) == 12 - 2  # 2 rejected
    assert namespace["outcome"].steps == "all"

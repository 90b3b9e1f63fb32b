"""The docs a newcomer reads: every benchmark section lives on the page bench/_common.PAGES names, every bench's
write_section call has a page, and every relative link in README.md and docs/ points at a file and heading that exist."""
from __future__ import annotations

import ast
import itertools
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import _common  # noqa: E402

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def test_every_section_lives_on_its_page_and_every_page_is_in_the_index():
    """A section not measured yet may be missing, but never on another page (write_section would add a second)."""
    index = (_common.DOCS / "index.md").read_text()
    pages = {page.name: page.read_text() for page in _common.DOCS.glob("*.md") if page.name != "index.md"}
    for heading, page in _common.PAGES.items():
        assert page in pages and f"]({page})" in index, page
        elsewhere = [name for name, text in pages.items() if f"\n## {heading}\n" in text and name != page]
        assert not elsewhere, f"## {heading} is on {elsewhere}, PAGES says {page}"
    on_pages = {h for text in pages.values() for h in re.findall(r"^## (.+)$", text, re.M)}
    assert on_pages <= set(_common.PAGES), on_pages - set(_common.PAGES)


def write_section_headings(script: Path) -> list[str]:
    """The heading each write_section call of a bench script writes: a string, a module-level string constant, or a
    parameter of the enclosing function, read from that function's calls in the same script."""
    tree = ast.parse(script.read_text())
    constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) for t in node.targets if isinstance(t, ast.Name)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "write_section"]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    headings = []
    for call in calls:
        arg = call.args[0]
        if isinstance(arg, ast.Constant) or getattr(arg, "id", None) in constants:
            headings.append(arg.value if isinstance(arg, ast.Constant) else constants[arg.id])
            continue
        func = call
        while not isinstance(func, ast.FunctionDef):
            func = parents[func]
        position = [a.arg for a in func.args.args].index(arg.id)
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == func.name]
        headings += [u.args[position].value for u in uses]
    return headings


def test_every_bench_write_section_call_has_a_page():
    written = {h for script in (REPO / "bench").glob("*.py") for h in write_section_headings(script)}
    assert len(written) >= 10
    assert written <= set(_common.PAGES), written - set(_common.PAGES)


def test_write_section_replaces_its_section_only_and_wraps_prose(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nIntro.\n\n## A\n\nold a\n\n## B\n\nold b\n")
    long_prose = " ".join(["word"] * 60) + " - dash 1. one"
    _common.write_section("A", f"new a\n\n{long_prose}\n\n| t | {'x' * 130} |", page)
    text = page.read_text()
    assert text.startswith("# Title\n\nIntro.\n\n## A\n\nnew a\n")
    assert "old a" not in text and text.endswith("## B\n\nold b\n")
    lines = text.splitlines()
    assert all(len(line) <= _common.WIDTH for line in lines if not line.startswith("|"))
    assert not any(re.match(r"(- |1\. )", line) for line in lines)
    assert f"| t | {'x' * 130} |" in lines
    _common.write_section("C", "c", page)
    assert page.read_text().endswith("old b\n\n## C\n\nc\n")


def test_unknown_heading_is_refused_with_its_name():
    with pytest.raises(KeyError, match="No such section"):
        _common.page_of("No such section")


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path):
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{doc.name}: {target}"


def code_files() -> list[Path]:
    return [p for folder in ("src", "bench", "configs", "tests") for p in sorted((REPO / folder).rglob("*"))
            if p.suffix in {".py", ".yaml", ".html", ".js"}]


def test_docs_named_in_code_and_configs_exist():
    named = 0
    for path in code_files():
        for doc, anchor in re.findall(r"\b(docs/[\w./-]+?\.md)(?:#([\w-]+))?", path.read_text(errors="replace")):
            named += 1
            assert (REPO / doc).exists(), f"{path.relative_to(REPO)}: {doc}"
            assert not anchor or anchor in anchors(REPO / doc), f"{path.relative_to(REPO)}: {doc}#{anchor}"
    assert named >= 20


def readme_layout() -> str:
    """The src/fakescope/ part of the README's Layout block."""
    block = (REPO / "README.md").read_text().split("## Layout\n", 1)[1].split("```", 2)[1]
    return block.split("src/fakescope/\n", 1)[1].split("\nconfigs/", 1)[0]


def test_readme_layout_names_every_package_and_nothing_gone():
    src = REPO / "src" / "fakescope"
    layout = readme_layout()
    top = {p.name + "/" for p in src.iterdir() if p.is_dir() and p.name != "__pycache__"}
    top |= {p.name for p in src.glob("*.py")}
    named = set(re.findall(r"^  (\S+)", layout, re.M))
    assert named == top, f"README Layout: missing {sorted(top - named)}, gone {sorted(named - top)}"
    for package in {p.parent for p in src.rglob("__init__.py")} - {src}:
        assert f"{package.name}/" in layout, f"README Layout does not name {package.relative_to(src)}/"


def readme_scan_tables() -> list[tuple[str, list[dict[str, str]], str, str]]:
    """(command, rows by column name, caption, summary line) of each README `fakescope scan` example that prints a
    table."""
    lines, out = (REPO / "README.md").read_text().splitlines(), []
    for i, line in enumerate(lines):
        if not line.startswith("$ fakescope scan") or not lines[i + 1].startswith("┏"):
            continue
        header = [c.strip() for c in lines[i + 2].strip("┃").split("┃")]
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("└"))
        rows = [dict(zip(header, (c.strip() for c in row.strip("│").split("│")))) for row in lines[i + 4:end]]
        out.append((line, rows, lines[end + 1].strip(), lines[end + 2]))
    return out


def test_readme_scan_tables_label_at_the_shipped_threshold():
    """The sample output is the default detector's: a row labelled against the shipped threshold (or uncertain when
    unfamiliar and undecided), and the summary counts those labels (it once showed a 0.753 'fake' at 0.827)."""
    from fakescope.checkpoint import read_meta
    from fakescope.familiarity import FAMILIAR_CUT, UNDECIDED
    from fakescope.inference.detector import DEFAULT_DETECTOR, shipped_weights

    if shipped_weights(DEFAULT_DETECTOR) is None:
        pytest.skip("the default detector's weights are not in this checkout")
    threshold = read_meta(shipped_weights(DEFAULT_DETECTOR)).threshold
    tables = readme_scan_tables()
    assert len(tables) >= 2
    for command, rows, caption, summary in tables:
        assert caption == f"fake at probability >= {threshold:.3f}", (command, caption)
        assert "--threshold" not in command and "--trust-credentials" not in command, command
        for row in rows:
            p, familiarity = float(row["fake probability"]), float(row["familiarity"].split()[0])
            unsure = familiarity < FAMILIAR_CUT and UNDECIDED[0] < p < UNDECIDED[1]
            assert abs(p - threshold) > 5e-4, f"{row['file']}: {p} too close to {threshold:.4f} to tell"
            assert row["label"] == ("uncertain" if unsure else "fake" if p >= threshold else "real"), (command, row)
        n_fake = sum(r["label"] == "fake" for r in rows)
        n_real = sum(r["label"] == "real" for r in rows)
        n_unsure = sum(r["label"] == "uncertain" for r in rows)
        unsure = f", {n_unsure} uncertain" if n_unsure else ""
        assert summary.startswith(f"{len(rows)} files: {n_fake} flagged fake, {n_real} real{unsure}, 0 errors"), summary


def test_readme_json_excerpts_show_a_rows_fields_as_scan_writes_them():
    """Each README excerpt of a `--format json` row (`... | head -N`) is N lines whose fields come in the order a
    scan writes them (an excerpt once lacked a field the rows had gained)."""
    from fakescope.forensics.provenance import Provenance
    from fakescope.inference.scan import ScanResult

    order = list(ScanResult("a.jpg", 0.5, "fake", "m", threshold=0.5, provenance=Provenance()).to_dict())
    lines = (REPO / "README.md").read_text().splitlines()
    excerpts = [(i, int(m.group(1))) for i, line in enumerate(lines)
                if line.startswith("$ ") and (m := re.search(r"\bhead -(\d+)\b", line)) and lines[i + 1] == "["]
    assert len(excerpts) >= 2
    for i, n in excerpts:
        shown = list(itertools.takewhile(lambda line: line != "```" and not line.startswith("$ "), lines[i + 1:]))
        assert len(shown) == n, lines[i]
        keys = [m.group(1) for line in shown if (m := re.match(r'    "(\w+)":', line))]
        assert keys == order[:len(keys)], lines[i]

"""The README: short, linking every docs/ page, free of commit hashes, and its numbers equal to the committed record.

The results table sits between ``<!-- results-table:start params=FILE -->`` and ``<!-- results-table:end -->``;
each of its cells must equal the cell of the same row and column that `dars ablation table --params FILE` prints
from the committed record (``outputs/ablation_runs.json``). A README table may show fewer rows and columns than the
printed one, in any order, but no cell of its own. More tables (another benchmark) are checked the same way.
The quick start's summary, between ``<!-- pipeline-summary:start -->`` and ``<!-- pipeline-summary:end -->``,
must be what ``./run.sh pipeline`` prints from the committed ``outputs/r*/metrics.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 250
# A commit hash: 7 to 40 hex digits as a word, with at least one digit and one letter (so that neither a number
# like 2107112 nor a word like "facade" or "added" counts).
HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
RESULTS_BLOCK = re.compile(r"<!-- results-table:start params=(\S+) -->\n(.*?)<!-- results-table:end -->", re.S)
SUMMARY_BLOCK = re.compile(r"<!-- pipeline-summary:start -->\n```\n(.*?)```\n<!-- pipeline-summary:end -->", re.S)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def markdown_table(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(header, {row label: {column: cell}}) of the first pipe table in ``text``."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    assert len(lines) >= 3, f"no table in {text!r}"
    split = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, rows = split[0], split[2:]
    assert set("".join(split[1])) <= set("-: "), f"not a header separator: {lines[1]}"
    table = {}
    for row in rows:
        assert len(row) == len(header), f"row {row} has {len(row)} cells for {len(header)} columns"
        assert row[0] not in table, f"row {row[0]!r} twice"
        table[row[0]] = dict(zip(header[1:], row[1:]))
    return header, table


def printed_tables(params: str) -> str:
    """What `dars ablation table --params PARAMS` prints from the committed record, in-process: the same
    functions, without first copying new DVC experiments into the record (a fresh clone has none)."""
    from pipeline_lib.experiments.grid import DEFAULT_VARIANTS, load_grid, parse_variants
    from pipeline_lib.experiments.record import ablation_table, grid_rows, read_record, recorded_seeds

    variants = parse_variants(",".join(DEFAULT_VARIANTS))
    _, grid, rounds = load_grid(Path(params))
    rows = grid_rows(read_record(ROOT / "outputs/ablation_runs.json"), grid, variants, None)
    assert rows, f"the committed record holds no row of {params}'s grid"
    return ablation_table(rows, variants, recorded_seeds(rows), rounds)


def scores_section(printed: str) -> str:
    """The first table `dars ablation table` prints: scores and pseudo labels per method."""
    start = printed.index("**scores and pseudo labels")
    return printed[start:printed.index("\n\n**", start + 1)]


def mismatches(readme_table: str, printed_table: str) -> list[str]:
    """Each README cell that is not the printed table's cell of the same row and column."""
    header, shown = markdown_table(readme_table)
    _, truth = markdown_table(printed_table)
    problems = [f"column {column!r} is not printed" for column in header[1:] if column not in next(iter(truth.values()))]
    for label, cells in shown.items():
        if label not in truth:
            problems.append(f"row {label!r} is not printed")
            continue
        problems += [f"{label} / {column}: README {cell!r}, printed {truth[label].get(column)!r}"
                     for column, cell in cells.items() if truth[label].get(column) != cell]
    return problems


def test_the_readme_is_short():
    assert len(readme().splitlines()) <= MAX_LINES


def test_the_readme_links_every_docs_page():
    text = readme()
    pages = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md"))
    assert pages
    assert [page for page in pages if f"]({page}" not in text] == []


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    for page in [README, *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"


def test_the_readme_names_no_commit_hash_or_issue_number():
    text = readme()
    assert HASH.findall(text) == []
    assert re.findall(r"(?<![\w&])#\d+\b", text) == []


def test_the_hash_pattern_finds_hashes_and_nothing_else():
    assert HASH.findall("checked at c0b7689 and f2e5324, experiment 92c0672") == ["c0b7689", "f2e5324", "92c0672"]
    assert HASH.findall("arXiv 2107.11279, 1234567 pixels, a facade, decade, added, deadbeef") == []


def test_the_readme_has_a_bibtex_block_and_a_licence_line():
    text = readme()
    assert "```bibtex\n@inproceedings{" in text
    assert "Re-distributing Biased Pseudo Labels" in text
    assert "https://arxiv.org/abs/2107.11279" in text and "https://github.com/CVMI-Lab/DARS" in text
    assert re.search(r"^MIT, see \[LICENSE\]\(LICENSE\)", text, re.M)
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_the_readme_keeps_the_commands_ci_and_users_run():
    text = readme()
    assert "./run.sh test" in text and "./run.sh pipeline" in text
    assert "./run.sh test" in (ROOT / ".ci/run").read_text()


def test_the_readme_results_tables_are_what_dars_ablation_table_prints(monkeypatch):
    monkeypatch.chdir(ROOT)  # the parameter files name data.root relative to the repository
    blocks = RESULTS_BLOCK.findall(readme())
    assert blocks, "no <!-- results-table:start params=FILE --> block in the README"
    for params, table in blocks:
        header, shown = markdown_table(table)
        assert len(header) >= 3 and len(shown) >= 3, "the results table is too small to say anything"
        assert mismatches(table, scores_section(printed_tables(params))) == [], params


def test_a_changed_number_in_the_results_table_is_caught(monkeypatch):
    monkeypatch.chdir(ROOT)
    params, table = RESULTS_BLOCK.findall(readme())[0]
    printed = scores_section(printed_tables(params))
    dars_row = next(line for line in table.splitlines() if line.startswith("| DARS |"))
    cell = dars_row.split("|")[2]
    changed = table.replace(dars_row, dars_row.replace(cell, cell.replace(".", "0.", 1), 1))
    assert changed != table
    assert mismatches(changed, printed)


def pipeline_summary() -> str:
    """What ./run.sh pipeline prints from the committed outputs/r*/metrics.json (run.sh's formatting)."""
    lines = [f"{'round':6} {'mIoU':>6} {'tail':>6} {'head':>6}"]
    for path in sorted((ROOT / "outputs").glob("r*/metrics.json")):
        metrics = json.loads(path.read_text())
        cells = [f"{100 * metrics[key]:6.1f}" if metrics.get(key) is not None else "     –"
                 for key in ("miou", "tail_miou", "head_miou")]
        lines.append(" ".join([f"{path.parent.name:6}", *cells]))
    return "\n".join(lines) + "\n"


def test_the_quick_start_summary_is_the_committed_metrics():
    found = SUMMARY_BLOCK.findall(readme())
    assert len(found) == 1, "the README needs one <!-- pipeline-summary:start --> block"
    assert found[0] == pipeline_summary()
    assert 'print(f"{\'round\':6} {\'mIoU\':>6} {\'tail\':>6} {\'head\':>6}")' in (ROOT / "run.sh").read_text()


def test_the_quick_start_pseudo_label_numbers_are_the_committed_ones():
    metrics = json.loads((ROOT / "outputs/r1/pseudo_label_metrics.json").read_text())
    found = re.search(r"round 1 labels ([\d.]+) % of the unlabelled pixels at ([\d.]+) % accuracy, with the "
                      r"labelled class\s+distribution \(KL ([\d.]+);", readme())
    assert found, "the quick start's sentence on round 1's pseudo labels is missing or reworded"
    assert found.groups() == (f"{100 * metrics['fraction_labeled']:.1f}",
                              f"{100 * metrics['pseudo_label_accuracy']:.1f}", f"{metrics['kl_divergence']:.3f}")

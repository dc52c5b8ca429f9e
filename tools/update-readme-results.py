#!/usr/bin/env python3
"""Copies the offline demo's report into the repository and its verdict into README.md.

    python3 tools/update-readme-results.py [results/offline-demo]

The report (`<dir>/report/double_win.md`, written by `dwlth demo`) becomes
`docs/results/offline-demo.md`; its double-win table and the "What this shows" paragraph
generated from the numbers replace the README's block between the two markers below.
`tests/readme.rs` checks that the README still says what the committed report says.
"""
import pathlib
import sys

BEGIN = "<!-- offline-demo-report:begin -->"
END = "<!-- offline-demo-report:end -->"


def verdict_block(report: str) -> str:
    """The table and the paragraph: from the table's header to the intervals section."""
    start = report.index("| pre-training | dataset | data |")
    end = report.index("\n## Ticket − dense")
    return report[start:end].strip() + "\n"


def main() -> None:
    root = pathlib.Path(__file__).resolve().parent.parent
    results = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "results/offline-demo")
    report = (results / "report" / "double_win.md").read_text(encoding="utf-8")
    committed = root / "docs" / "results" / "offline-demo.md"
    committed.parent.mkdir(parents=True, exist_ok=True)
    committed.write_text(report, encoding="utf-8")
    readme_path = root / "README.md"
    readme = readme_path.read_text(encoding="utf-8")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    block = verdict_block(report)
    readme_path.write_text(f"{before}{BEGIN}\n{block}{END}{after}", encoding="utf-8")
    print(f"wrote {committed} and the README's block ({len(block.splitlines())} lines)")


if __name__ == "__main__":
    main()

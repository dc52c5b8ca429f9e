//! The README states the offline demo's result as the committed report of it does: its block
//! between the markers is the report's double-win table and the paragraph generated from the
//! numbers (`tools/update-readme-results.py` copies both after a run of `dwlth demo`).

use std::path::Path;

const BEGIN: &str = "<!-- offline-demo-report:begin -->";
const END: &str = "<!-- offline-demo-report:end -->";

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_says_what_the_committed_demo_report_says() {
    let readme = read("README.md");
    let report = read("docs/results/offline-demo.md");
    let block = readme
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(block, _)| block.trim())
        .expect("README.md has the offline demo's block between its markers");
    let start = report
        .find("| pre-training | dataset | data |")
        .expect("the report has its double-win table");
    let end = report
        .find("\n## Ticket − dense")
        .expect("the report has its intervals section");
    assert_eq!(
        block,
        report[start..end].trim(),
        "README.md's block differs from docs/results/offline-demo.md: run \
         `python3 tools/update-readme-results.py results/offline-demo` after `dwlth demo`"
    );
    assert!(block.contains("## What this shows"), "{block}");
}

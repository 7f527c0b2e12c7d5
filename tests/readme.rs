//! The README's first Rust example is what a reader pastes into a new project: it must be a
//! whole program, with no lines hidden from the reader (rustdoc's `# ` lines). Issue 9,
//! item 7: it ended in a hidden `# Ok::<(), fusedprop::Error>(())`, so the shown code used
//! `?` outside a function returning `Result` and did not compile when pasted into `main`.
//! (The README's examples also run as doctests, see `ReadmeDoctests` in `src/lib.rs`.)

#[test]
fn first_rust_example_is_a_whole_program_with_nothing_hidden() {
    let readme = include_str!("../README.md");
    let start = readme.find("```rust\n").expect("a Rust example") + "```rust\n".len();
    let len = readme[start..].find("```").expect("closed");
    let example = &readme[start..start + len];
    for line in example.lines() {
        assert!(
            !(line == "#" || line.starts_with("# ")),
            "hidden line in the README's first example: {line:?}"
        );
    }
    assert!(
        example.contains("fn main() -> Result<(), fusedprop::Error> {"),
        "{example}"
    );
    assert!(example.trim_end().ends_with('}'), "{example}");
}

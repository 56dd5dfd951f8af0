//! README.md's Rust example is `core/examples/generate.rs` (which `cargo
//! test` builds): the block under "Using the library" must be the part of
//! the example between its `// README begin` and `// README end` lines.

#[test]
fn readme_example_is_the_compiled_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/core/examples/generate.rs")).unwrap();
    let section = &readme[readme
        .find("## Using the library")
        .expect("README has a \"Using the library\" section")..];
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|s| s.split("```\n").next())
        .expect("a ```rust block in that section");
    let marked = example
        .split("// README begin\n")
        .nth(1)
        .and_then(|s| s.split("// README end\n").next())
        .expect("README markers in core/examples/generate.rs");
    assert_eq!(
        block, marked,
        "README.md's example differs from core/examples/generate.rs: copy the marked part over"
    );
}

//! The `spanline` command-line tool.
fn main() {}

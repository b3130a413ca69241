//! Critical-path benchmark (placeholder).
fn main() {}

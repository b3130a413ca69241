//! The OTLP receivers and helpers live in `spanline-testkit`, shared with the
//! workspace-level tests.
#![allow(unused_imports, unreachable_pub)]

pub use spanline_testkit::otlp::*;

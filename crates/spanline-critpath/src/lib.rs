//! Critical-path analysis for spanline traces.
//!
//! ```
//! assert!(true);
//! ```

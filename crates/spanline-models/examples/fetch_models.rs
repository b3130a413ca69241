//! Resolve (and, when missing, fetch with pip) the model files spanline's
//! stages and tests use, then print where they are:
//!
//! ```text
//! cargo run -p spanline-models --no-default-features --example fetch_models
//! ```
//!
//! Configuration: `SPANLINE_MODEL_CACHE`, `HF_HUB_CACHE`/`HF_HOME`,
//! `SPANLINE_PYTHON` (see `docs/models.md`).

use std::process::ExitCode;

use spanline_models::{ALL_MINILM_L6_V2, ModelResolver, SMOLLM2_135M_INSTRUCT};

fn main() -> ExitCode {
    let resolver = ModelResolver::from_env();
    let mut failed = false;
    for spec in [&ALL_MINILM_L6_V2, &SMOLLM2_135M_INSTRUCT] {
        match resolver.resolve(spec) {
            Ok(model) => println!(
                "{}: {} ({:?})",
                spec.name,
                model.dir.display(),
                model.origin
            ),
            Err(e) => {
                eprintln!("{}: {e}", spec.name);
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

//! The attribute keys the analyser reads.
//!
//! These strings mirror `spanline_core::semconv` (see `docs/span-structure.md`).
//! They are copied, not imported, so that this crate stays independent of the
//! instrumentation crates; `tests/critical_path.rs` at the workspace root keeps them equal.

/// `spanline.pipeline.name`: the pipeline a step belongs to.
pub const PIPELINE_NAME: &str = "spanline.pipeline.name";
/// `spanline.stage.name`: the stage's name; present on every stage span.
pub const STAGE_NAME: &str = "spanline.stage.name";
/// `spanline.stage.kind`: `preprocess`, `embed`, `retrieve`, …
pub const STAGE_KIND: &str = "spanline.stage.kind";
/// `spanline.step.index`: position of the step in its pipeline, from 0.
pub const STEP_INDEX: &str = "spanline.step.index";
/// `spanline.step.depends_on`: step indices the span waited on.
pub const STEP_DEPENDS_ON: &str = "spanline.step.depends_on";
/// `spanline.step.blocking`: whether the parent waited for this span.
pub const STEP_BLOCKING: &str = "spanline.step.blocking";
/// `spanline.parallel.group`: the step index of a parallel group.
pub const PARALLEL_GROUP: &str = "spanline.parallel.group";
/// `spanline.parallel.branch`: branch number within a parallel group.
pub const PARALLEL_BRANCH: &str = "spanline.parallel.branch";
/// `spanline.parallel.width`: number of branches of a parallel group.
pub const PARALLEL_WIDTH: &str = "spanline.parallel.width";
/// `spanline.batch.index`: item number within a batch.
pub const BATCH_INDEX: &str = "spanline.batch.index";
/// `spanline.batch.size`: items in the batch.
pub const BATCH_SIZE: &str = "spanline.batch.size";
/// `spanline.batch.concurrency`: items of the batch in flight at once.
pub const BATCH_CONCURRENCY: &str = "spanline.batch.concurrency";
/// `spanline.fallback.action`: `fallback` or `skip`, on a failed primary.
pub const FALLBACK_ACTION: &str = "spanline.fallback.action";
/// `spanline.fallback.reason`: `timeout` or `error`, on a failed primary.
pub const FALLBACK_REASON: &str = "spanline.fallback.reason";
/// `spanline.fallback.for`: on a fallback span, the stage it stands in for.
pub const FALLBACK_FOR: &str = "spanline.fallback.for";
/// `spanline.segment.type`: `stage` (default), `hop` or `queue`.
pub const SEGMENT_TYPE: &str = "spanline.segment.type";
/// `service.name` resource attribute.
pub const SERVICE_NAME: &str = "service.name";

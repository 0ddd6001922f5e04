//! The judges, Auto-J and Prometheus 2: their prompts, byte-exact; the verdicts their
//! critiques end with; judging a pair (optionally in both orders) or a single response; batch
//! metrics.

pub mod dataset;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod protocol;
pub mod rubric_metrics;
pub mod session;
pub mod verdict;

pub use protocol::{model_input, render, Item, JudgeFamily, Protocol, ProtocolError, Rubric, ScoreRubric};
pub use verdict::{parse_pairwise, parse_preference, parse_rating, parse_score, Winner};

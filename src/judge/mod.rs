//! The judges (Auto-J, Prometheus 2, Skywork-Critic, Selene Mini, CompassJudger-1,
//! Flow-Judge): their prompts, byte-exact; the verdicts their critiques end with; judging a pair
//! (optionally in both orders) or a single response; batch metrics.

pub mod autoj_metrics;
pub mod dataset;
pub mod flow_metric;
pub mod output;
pub mod policy;
pub mod prometheus_metrics;
pub mod protocol;
pub mod report;
pub mod run;
pub mod session;
pub mod verdict;

// The family is the format's (a manifest records it); the judge layer is where callers choose by it.
pub use crate::format::JudgeFamily;
pub use flow_metric::{FlowMetric, FlowRubricItem};
pub use protocol::{
    chat_input, model_input, render, BinaryRubric, Item, Protocol, ProtocolError, Rubric, ScoreRubric, VerdictKind,
};
pub use verdict::{parse_pairwise, parse_preference, parse_rating, parse_score, Winner};

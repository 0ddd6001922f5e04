//! Auto-J as a judge: its prompts, byte-exact; the verdicts its critiques end with;
//! judging a pair (optionally in both orders) or a single response; batch metrics.

pub mod dataset;
pub mod metrics;
pub mod protocol;
pub mod session;
pub mod verdict;

pub use protocol::{model_input, render, Item, JudgeFamily, Protocol, ProtocolError};
pub use verdict::{parse_pairwise, parse_rating, Winner};

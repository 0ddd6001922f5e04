//! Auto-J as a judge: its prompts, byte-exact; the verdicts its critiques end with;
//! judging a pair (optionally in both orders) or a single response; batch metrics.

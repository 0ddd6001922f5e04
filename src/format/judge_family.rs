//! The judge family a model directory's manifest names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A family of judge models: the protocols a model was trained on. A model directory's
/// manifest names its family ([`super::Manifest::judge`]) so that the CLI, the API and
/// the page choose its protocols and refuse the other family's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeFamily {
    /// Auto-J (GAIR): `pairwise_tie`, `single` and their Chinese versions.
    #[serde(rename = "autoj")]
    AutoJ,
    /// Prometheus 2 (prometheus-eval): rubric grading, absolute and relative.
    Prometheus,
}

impl JudgeFamily {
    pub fn name(&self) -> &'static str {
        match self {
            JudgeFamily::AutoJ => "autoj",
            JudgeFamily::Prometheus => "prometheus",
        }
    }

    /// The judge's name for people.
    pub fn title(&self) -> &'static str {
        match self {
            JudgeFamily::AutoJ => "Auto-J",
            JudgeFamily::Prometheus => "Prometheus 2",
        }
    }
}

impl fmt::Display for JudgeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

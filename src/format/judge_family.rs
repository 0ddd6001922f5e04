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
    /// Skywork-Critic (Llama-3.1): the better of two responses, `[[A]]` or `[[B]]`.
    Skywork,
    /// Atla Selene Mini (Llama-3.1): a 1-5 score or the better of two, against criteria.
    Selene,
    /// CompassJudger-1 (Qwen2.5): the better of two responses, `[[A]]` or `[[B]]`.
    #[serde(rename = "compassjudger")]
    CompassJudger,
    /// Flow-Judge (Phi-3.5-mini): a score on a metric's rubric, `<feedback>` then `<score>`.
    #[serde(rename = "flowjudge")]
    FlowJudge,
}

impl JudgeFamily {
    pub const ALL: [JudgeFamily; 6] = [
        JudgeFamily::AutoJ,
        JudgeFamily::Prometheus,
        JudgeFamily::Skywork,
        JudgeFamily::Selene,
        JudgeFamily::CompassJudger,
        JudgeFamily::FlowJudge,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            JudgeFamily::AutoJ => "autoj",
            JudgeFamily::Prometheus => "prometheus",
            JudgeFamily::Skywork => "skywork",
            JudgeFamily::Selene => "selene",
            JudgeFamily::CompassJudger => "compassjudger",
            JudgeFamily::FlowJudge => "flowjudge",
        }
    }

    /// The judge's name for people.
    pub fn title(&self) -> &'static str {
        match self {
            JudgeFamily::AutoJ => "Auto-J",
            JudgeFamily::Prometheus => "Prometheus 2",
            JudgeFamily::Skywork => "Skywork-Critic",
            JudgeFamily::Selene => "Selene Mini",
            JudgeFamily::CompassJudger => "CompassJudger-1",
            JudgeFamily::FlowJudge => "Flow-Judge",
        }
    }
}

impl fmt::Display for JudgeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

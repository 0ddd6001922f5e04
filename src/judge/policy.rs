//! The choices the CLI and the page make alike, made here once: which protocol judges an item
//! or a batch ([`ProtocolRequest::choose`]), how many KV cache positions a batch's slots need
//! ([`slot_context`]), and the defaults the page reads through the wasm ([`DEFAULTS`]).

use serde::Serialize;

use super::dataset::Row;
use super::protocol::{Item, Protocol, ProtocolError, Rubric};
use super::session::{tokenized_input, JudgeError, AUTOJ_MAX_NEW_TOKENS};
use crate::format::ChatTemplate;
use crate::format::JudgeFamily;
use crate::tokenizer::Tokenizer;

/// The settings a caller gets when it names none: the CLI's flag defaults and the page's
/// fields (exported to JavaScript by the wasm's `defaults()`).
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Defaults {
    /// Critique tokens at most (Auto-J's own limit; Prometheus' too).
    pub max_new_tokens: usize,
    /// `generate`'s token limit.
    pub generate_max_new_tokens: usize,
}

pub const DEFAULTS: Defaults = Defaults { max_new_tokens: AUTOJ_MAX_NEW_TOKENS, generate_max_new_tokens: 256 };

/// The family a rubric method (the page's `rubric`/`compare`/`classify`, Python's
/// `rubric`/`compare`) runs: the one the caller names, else the model's own when it is a rubric
/// judge, else Prometheus 2's. Auto-J grades no rubric.
pub fn rubric_family(named: Option<JudgeFamily>, model: Option<JudgeFamily>) -> Result<JudgeFamily, ProtocolError> {
    match (named, model) {
        (Some(JudgeFamily::AutoJ), _) => Err(ProtocolError::AutoJRubric),
        (Some(named), _) => Ok(named),
        (None, Some(model)) if model != JudgeFamily::AutoJ => Ok(model),
        (None, _) => Ok(JudgeFamily::Prometheus),
    }
}

/// What a front end knows when it picks the protocol for an item or a batch. One rule for
/// both: a named protocol as it is; else the family the call asks for, else the model's, else
/// the one the input suggests, else Auto-J; within the family Auto-J's in the language asked
/// for (English by default), the others' with a reference answer (`_ref`) when one is given;
/// an error for a kind of item or a reference answer the family has no protocol for.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtocolRequest<'a> {
    /// Named by the caller (`--protocol`, `judgeBatch`'s `protocol`).
    pub named: Option<Protocol>,
    /// The family the call itself asks for: the page's `pairwise`/`single` (Auto-J),
    /// `rubric`/`compare` (Prometheus, or the model's family when it is another rubric judge),
    /// a `parseRows` row's protocol. Outranks the model's.
    pub asked: Option<JudgeFamily>,
    /// The loaded model's judge family (its manifest's `judge`).
    pub model: Option<JudgeFamily>,
    /// The family the input suggests (a rubric, prometheus-eval's field names), for a model
    /// of no known family.
    pub suggested: Option<JudgeFamily>,
    /// Auto-J's language (`en` or `zh`), when the caller gives one: an error with a named
    /// protocol or another family, and read only after those checks.
    pub language: Option<&'a str>,
    /// The item (the first of a batch) is a pair.
    pub pairwise: bool,
    /// The item (the first of a batch) has a reference answer.
    pub reference: bool,
    /// The call asks for a Yes/No answer (Selene Mini's classification): the wasm's
    /// `classify`, or a Yes/No rubric.
    pub answer: bool,
}

impl ProtocolRequest<'_> {
    /// The family whose protocol [`Self::choose`] picks when none is named.
    pub fn family(&self) -> JudgeFamily {
        self.asked.or(self.model).or(self.suggested).unwrap_or(JudgeFamily::AutoJ)
    }

    /// What a batch knows: the model's family, and what its first row (a bad row is reported
    /// when read for the protocol) and the run's rubric suggest.
    pub fn for_batch(model: Option<JudgeFamily>, first: Option<&Row>, rubric: Option<&Rubric>) -> Self {
        ProtocolRequest {
            model,
            suggested: first.map(|row| row.protocol.family()),
            pairwise: first.is_none_or(|row| row.protocol.is_pairwise()),
            reference: first.is_some_and(|row| row.item.reference_answer().is_some()),
            answer: matches!(first.and_then(|row| row.item.rubric()).or(rubric), Some(Rubric::Binary(_))),
            ..ProtocolRequest::default()
        }
    }

    /// [`Self::choose`], checked to be served by the model's family and, with `swap`, to judge
    /// a pair (which is what judging in both orders means).
    pub fn choose_served(&self, swap: bool) -> Result<Protocol, ProtocolError> {
        let protocol = self.choose()?;
        protocol.check_served_by(self.model)?;
        if swap && !protocol.is_pairwise() {
            return Err(ProtocolError::SwapNeedsPair { protocol: protocol.name() });
        }
        Ok(protocol)
    }

    pub fn choose(&self) -> Result<Protocol, ProtocolError> {
        if let Some(named) = self.named {
            return match self.language {
                Some(_) => Err(ProtocolError::ProtocolAndLanguage),
                None => Ok(named),
            };
        }
        if self.answer {
            return match (self.family(), self.language, self.pairwise, self.reference) {
                (JudgeFamily::Selene, None, false, false) => Ok(Protocol::SeleneClassification),
                (JudgeFamily::Selene, None, false, true) => Ok(Protocol::SeleneClassificationRef),
                (_, Some(_), _, _) => Err(ProtocolError::LanguageIsAutoJ),
                (family, None, pairwise, _) => Err(ProtocolError::NoClassification { family, pairwise }),
            };
        }
        Ok(match (self.family(), self.language, self.pairwise, self.reference) {
            (JudgeFamily::AutoJ, language, pairwise, _) => match (language.unwrap_or("en"), pairwise) {
                ("en", true) => Protocol::PairwiseTie,
                ("en", false) => Protocol::Single,
                ("zh", true) => Protocol::ZhPairwiseTie,
                ("zh", false) => Protocol::ZhSingle,
                (other, _) => return Err(ProtocolError::UnknownLanguage(other.to_owned())),
            },
            (_, Some(_), _, _) => return Err(ProtocolError::LanguageIsAutoJ),
            (JudgeFamily::Prometheus, None, false, false) => Protocol::PrometheusAbsolute,
            (JudgeFamily::Prometheus, None, false, true) => Protocol::PrometheusAbsoluteRef,
            (JudgeFamily::Prometheus, None, true, false) => Protocol::PrometheusRelative,
            (JudgeFamily::Prometheus, None, true, true) => Protocol::PrometheusRelativeRef,
            (JudgeFamily::Selene, None, false, false) => Protocol::SeleneAbsolute,
            (JudgeFamily::Selene, None, false, true) => Protocol::SeleneAbsoluteRef,
            (JudgeFamily::Selene, None, true, false) => Protocol::SelenePairwise,
            (JudgeFamily::Skywork, None, true, false) => Protocol::Skywork,
            (JudgeFamily::CompassJudger, None, true, false) => Protocol::CompassJudger,
            (JudgeFamily::FlowJudge, None, false, false) => Protocol::FlowJudge,
            (JudgeFamily::FlowJudge, None, false, true) => Protocol::FlowJudgeRef,
            (family @ (JudgeFamily::Skywork | JudgeFamily::CompassJudger), None, false, _) => {
                return Err(ProtocolError::KindNotJudged { family, pairwise: false })
            }
            (family @ JudgeFamily::FlowJudge, None, true, _) => {
                return Err(ProtocolError::KindNotJudged { family, pairwise: true })
            }
            (family, None, pairwise, true) => return Err(ProtocolError::NoReferenceProtocol { family, pairwise }),
        })
    }
}

/// KV cache positions per sequence slot for judging `items` with `protocol` (each also
/// swapped, with `swap`): what the longest input and its critique need, not the whole
/// `context`, so that more rows fit beside each other. The whole context when some input
/// needs it all (too long, or truncated to fit): rows are then judged as with one slot.
pub fn slot_context<'a>(
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    protocol: Protocol,
    items: impl IntoIterator<Item = &'a Item>,
    swap: bool,
    max_new_tokens: usize,
    context: usize,
) -> Result<usize, JudgeError> {
    let mut longest = 0;
    for item in items {
        for item in std::iter::once(item.clone()).chain(item.swapped().filter(|_| swap)) {
            let (_, ids) = tokenized_input(tokenizer, template, protocol, &item)?;
            longest = longest.max(ids.len());
        }
    }
    Ok((longest + max_new_tokens).saturating_sub(1).clamp(1, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(request: ProtocolRequest) -> Result<Protocol, ProtocolError> {
        request.choose()
    }

    #[test]
    fn the_call_outranks_the_model_and_the_model_the_input() {
        let prometheus = Some(JudgeFamily::Prometheus);
        let autoj = Some(JudgeFamily::AutoJ);
        let pair = ProtocolRequest { pairwise: true, ..Default::default() };
        assert_eq!(choose(pair), Ok(Protocol::PairwiseTie));
        assert_eq!(choose(ProtocolRequest { suggested: prometheus, ..pair }), Ok(Protocol::PrometheusRelative));
        assert_eq!(choose(ProtocolRequest { model: autoj, suggested: prometheus, ..pair }), Ok(Protocol::PairwiseTie));
        assert_eq!(
            choose(ProtocolRequest { asked: prometheus, model: autoj, ..pair }),
            Ok(Protocol::PrometheusRelative)
        );
        let named = ProtocolRequest { named: Some(Protocol::ZhSingle), asked: prometheus, ..pair };
        assert_eq!(choose(named), Ok(Protocol::ZhSingle));
    }

    #[test]
    fn language_and_reference_pick_within_the_family() {
        let zh = ProtocolRequest { language: Some("zh"), ..Default::default() };
        assert_eq!(choose(zh), Ok(Protocol::ZhSingle));
        assert_eq!(choose(ProtocolRequest { pairwise: true, ..zh }), Ok(Protocol::ZhPairwiseTie));
        let reference = ProtocolRequest { model: Some(JudgeFamily::Prometheus), reference: true, ..Default::default() };
        assert_eq!(choose(reference), Ok(Protocol::PrometheusAbsoluteRef));
        assert_eq!(choose(ProtocolRequest { pairwise: true, ..reference }), Ok(Protocol::PrometheusRelativeRef));
        assert_eq!(choose(ProtocolRequest { language: Some("en"), ..reference }), Err(ProtocolError::LanguageIsAutoJ));
        let both = ProtocolRequest { named: Some(Protocol::Single), language: Some("en"), ..Default::default() };
        assert_eq!(choose(both), Err(ProtocolError::ProtocolAndLanguage));
        let french = ProtocolRequest { language: Some("fr"), ..Default::default() };
        assert_eq!(choose(french), Err(ProtocolError::UnknownLanguage("fr".into())));
    }

    #[test]
    fn the_newer_judges_refuse_what_they_have_no_protocol_for() {
        let model = |family| ProtocolRequest { model: Some(family), ..Default::default() };
        let pair = |family| ProtocolRequest { pairwise: true, ..model(family) };
        assert_eq!(choose(pair(JudgeFamily::Skywork)), Ok(Protocol::Skywork));
        assert_eq!(choose(pair(JudgeFamily::CompassJudger)), Ok(Protocol::CompassJudger));
        assert_eq!(choose(pair(JudgeFamily::Selene)), Ok(Protocol::SelenePairwise));
        assert_eq!(choose(model(JudgeFamily::Selene)), Ok(Protocol::SeleneAbsolute));
        assert_eq!(
            choose(ProtocolRequest { reference: true, ..model(JudgeFamily::FlowJudge) }),
            Ok(Protocol::FlowJudgeRef)
        );
        let skywork = JudgeFamily::Skywork;
        assert_eq!(choose(model(skywork)), Err(ProtocolError::KindNotJudged { family: skywork, pairwise: false }));
        let flow = JudgeFamily::FlowJudge;
        assert_eq!(choose(pair(flow)), Err(ProtocolError::KindNotJudged { family: flow, pairwise: true }));
        let selene = JudgeFamily::Selene;
        assert_eq!(
            choose(ProtocolRequest { reference: true, ..pair(selene) }),
            Err(ProtocolError::NoReferenceProtocol { family: selene, pairwise: true })
        );
        assert_eq!(
            choose(ProtocolRequest { language: Some("en"), ..model(selene) }),
            Err(ProtocolError::LanguageIsAutoJ)
        );
        let answer = ProtocolRequest { answer: true, ..model(selene) };
        assert_eq!(choose(answer), Ok(Protocol::SeleneClassification));
        assert_eq!(choose(ProtocolRequest { reference: true, ..answer }), Ok(Protocol::SeleneClassificationRef));
        assert_eq!(
            choose(ProtocolRequest { pairwise: true, ..answer }),
            Err(ProtocolError::NoClassification { family: selene, pairwise: true })
        );
        let prometheus = JudgeFamily::Prometheus;
        assert_eq!(
            choose(ProtocolRequest { answer: true, ..model(prometheus) }),
            Err(ProtocolError::NoClassification { family: prometheus, pairwise: false })
        );
    }
}

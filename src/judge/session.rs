//! Judging with a loaded model: one item, or a pair in both orders with the shared
//! prompt prefix prefilled once. The CLI and the wasm layer both call this.

use serde::Serialize;

use super::protocol::{chat_input, Item, Protocol, ProtocolError};
use super::verdict::{
    parse_arena_verdict, parse_bracketed_choice, parse_flow_score, parse_pairwise, parse_preference, parse_rating,
    parse_score, parse_selene_answer, parse_selene_preference, parse_selene_score, Winner,
};
use crate::engine::{BatchEvent, Cancel, Engine, EngineError, Finish, GenerateOptions, Generation};
use crate::format::ChatTemplate;
use crate::kernels::Sampling;
use crate::tokenizer::Tokenizer;

/// Auto-J's own generation limit.
pub const AUTOJ_MAX_NEW_TOKENS: usize = 1024;

/// Put where the middle of a truncated response was cut out.
pub const TRUNCATION_MARKER: &str = "\n[...]\n";

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("only a pair of responses can be judged in both orders")]
    NotAPair,
    #[error(
        "the judge input has {prompt_tokens} tokens; with {max_new_tokens} tokens for the critique the \
         {context}-token context allows at most {budget} (allow truncation to shorten the responses)"
    )]
    TooLong { prompt_tokens: usize, max_new_tokens: usize, context: usize, budget: usize },
    #[error(
        "even with the responses cut to nothing the judge input has {prompt_tokens} tokens, more than the \
         {budget} that fit beside a {max_new_tokens}-token critique"
    )]
    QueryTooLong { prompt_tokens: usize, max_new_tokens: usize, budget: usize },
}

#[derive(Clone, Debug)]
pub struct JudgeOptions {
    /// Critique tokens at most (EOS included).
    pub max_new_tokens: usize,
    /// Shorten the responses from the middle when the input does not fit the context.
    pub truncate: bool,
    pub cancel: Option<Cancel>,
}

impl Default for JudgeOptions {
    fn default() -> Self {
        Self { max_new_tokens: AUTOJ_MAX_NEW_TOKENS, truncate: false, cancel: None }
    }
}

/// The verdict a critique ends with; `None` when it names none. In a record: `winner` or
/// `rating` (Auto-J), `score` or `winner` as `"A"`/`"B"` (Prometheus).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Verdict {
    #[serde(rename = "winner")]
    Pairwise(Option<Winner>),
    #[serde(rename = "rating")]
    Rating(Option<f32>),
    /// Response A or B (Prometheus relative grading and the newer judges' pairwise
    /// protocols; a tie only where two orders disagree).
    #[serde(rename = "winner")]
    Preference(#[serde(serialize_with = "letter")] Option<Winner>),
    /// A score: Prometheus' and Selene's 1 to 5, Flow-Judge's on its metric's scale.
    #[serde(rename = "score")]
    Score(Option<u8>),
    /// Selene Mini's classification: Yes (true) or No.
    #[serde(rename = "answer")]
    Answer(#[serde(serialize_with = "yes_no")] Option<bool>),
}

impl Verdict {
    /// The verdict `critique` states under `protocol`.
    pub fn parse(protocol: Protocol, critique: &str) -> Verdict {
        match protocol {
            Protocol::PairwiseTie | Protocol::ZhPairwiseTie => Verdict::Pairwise(parse_pairwise(critique)),
            Protocol::Single | Protocol::ZhSingle => Verdict::Rating(parse_rating(critique)),
            Protocol::PrometheusRelative | Protocol::PrometheusRelativeRef => {
                Verdict::Preference(parse_preference(critique))
            }
            Protocol::PrometheusAbsolute | Protocol::PrometheusAbsoluteRef => Verdict::Score(parse_score(critique)),
            Protocol::Skywork | Protocol::CompassJudger => Verdict::Preference(parse_bracketed_choice(critique)),
            Protocol::CompassJudgerArena => Verdict::Preference(parse_arena_verdict(critique)),
            Protocol::SelenePairwise => Verdict::Preference(parse_selene_preference(critique)),
            Protocol::SeleneAbsolute | Protocol::SeleneAbsoluteRef => Verdict::Score(parse_selene_score(critique)),
            Protocol::SeleneClassification | Protocol::SeleneClassificationRef => {
                Verdict::Answer(parse_selene_answer(critique))
            }
            Protocol::FlowJudge | Protocol::FlowJudgeRef => Verdict::Score(parse_flow_score(critique)),
        }
    }

    pub fn winner(self) -> Option<Winner> {
        match self {
            Verdict::Pairwise(winner) | Verdict::Preference(winner) => winner,
            Verdict::Rating(_) | Verdict::Score(_) | Verdict::Answer(_) => None,
        }
    }

    /// A pairwise verdict of the same kind naming `winner`.
    fn with_winner(self, winner: Option<Winner>) -> Verdict {
        match self {
            Verdict::Preference(_) => Verdict::Preference(winner),
            _ => Verdict::Pairwise(winner),
        }
    }

    /// The verdict's value alone, as a record's `winner`, `label` or `combined` holds it.
    pub fn serialize_value<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Verdict::Pairwise(winner) => winner.serialize(serializer),
            Verdict::Rating(rating) => rating.serialize(serializer),
            Verdict::Preference(winner) => letter(winner, serializer),
            Verdict::Score(score) => score.serialize(serializer),
            Verdict::Answer(answer) => yes_no(answer, serializer),
        }
    }
}

/// An answer as Selene Mini writes it: `"Yes"` or `"No"`.
fn yes_no<S: serde::Serializer>(answer: &Option<bool>, serializer: S) -> Result<S::Ok, S::Error> {
    answer.map(|yes| if yes { "Yes" } else { "No" }).serialize(serializer)
}

/// A preference as prometheus-eval writes it: `"A"`, `"B"` (and `"tie"` for two orders that
/// disagree).
fn letter<S: serde::Serializer>(winner: &Option<Winner>, serializer: S) -> Result<S::Ok, S::Error> {
    winner
        .map(|winner| match winner {
            Winner::Response1 => "A",
            Winner::Response2 => "B",
            Winner::Tie => "tie",
        })
        .serialize(serializer)
}

/// One judged input. Serialized, it is the judgement record every output shares
/// (`webjudge judge`'s JSONL, the wasm API's results, the page's export; see
/// [`super::dataset::Record`]): `protocol`, `winner` or `rating`, then the fields below by
/// their names.
#[derive(Clone, Debug, Serialize)]
pub struct Judgement {
    pub protocol: Protocol,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub critique: String,
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the KV cache instead of being prefilled.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    /// The responses were shortened from the middle to fit the context.
    pub truncated: bool,
    pub finish: Finish,
    pub time_to_first_token_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

/// A pair judged in both orders. Serialized: the forward judgement's fields, `swapped`
/// (a judgement), `swapped_winner_mapped` and the fields below by their names.
#[derive(Clone, Debug, Serialize)]
pub struct SwapJudgement {
    /// Response 1 shown first, as given.
    #[serde(flatten)]
    pub forward: Judgement,
    /// The responses exchanged; its verdict refers to the swapped positions.
    pub swapped: Judgement,
    /// The swapped verdict mapped back to the original positions.
    #[serde(rename = "swapped_winner_mapped", serialize_with = "Verdict::serialize_value")]
    pub swapped_mapped: Verdict,
    /// Both verdicts parsed and equal after mapping.
    pub consistent: bool,
    /// The agreed winner; a tie when the orders disagree (position bias cancels out);
    /// the parsed one when only one parsed.
    #[serde(serialize_with = "Verdict::serialize_value")]
    pub combined: Verdict,
    /// Prompt tokens of the swapped input that the forward pass had already cached.
    pub shared_prefix_tokens: usize,
    /// Prefill time the shared prefix saved, at the forward input's prefill rate.
    pub prefill_saved_s: f64,
}

/// Which of a swap-judged pair's two generations a streamed piece belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Forward,
    Swapped,
}

pub struct Judge {
    engine: Engine,
    template: Option<ChatTemplate>,
}

impl Judge {
    /// A judge wrapping inputs in the model's own chat template (Auto-J: `[INST] … [/INST]`).
    pub fn new(engine: Engine) -> Self {
        let template = engine.manifest.chat_template.clone();
        Self { engine, template }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The exact model input for `item` and its token ids, shortened if allowed and needed.
    pub fn prepare(
        &self,
        protocol: Protocol,
        item: &Item,
        options: &JudgeOptions,
    ) -> Result<(String, Vec<u32>, bool), JudgeError> {
        protocol.check_served_by(self.engine.manifest.judge)?;
        let (input, ids) = tokenized_input(&self.engine.tokenizer, self.template.as_ref(), protocol, item)?;
        let budget = self.engine.prompt_budget(options.max_new_tokens);
        if ids.len() <= budget {
            return Ok((input, ids, false));
        }
        if !options.truncate {
            return Err(JudgeError::TooLong {
                prompt_tokens: ids.len(),
                max_new_tokens: options.max_new_tokens,
                context: self.engine.model().context(),
                budget,
            });
        }
        self.truncated(protocol, item, ids.len(), budget, options.max_new_tokens)
    }

    /// Cuts tokens out of the middle of the responses, the longest first, until the
    /// rendered input fits. Tokenization is not additive across the cut, so the fit is
    /// re-checked and the cut widened a few times.
    fn truncated(
        &self,
        protocol: Protocol,
        item: &Item,
        mut prompt_tokens: usize,
        budget: usize,
        max_new_tokens: usize,
    ) -> Result<(String, Vec<u32>, bool), JudgeError> {
        let tokenizer = &self.engine.tokenizer;
        let responses: Vec<Vec<u32>> = responses(item)
            .iter()
            .map(|text| tokenizer.encode_text(text).map_err(EngineError::from))
            .collect::<Result<_, _>>()?;
        let total: usize = responses.iter().map(Vec::len).sum();
        let mut cut = 0;
        for _ in 0..8 {
            cut = (cut + prompt_tokens.saturating_sub(budget) + TRUNCATION_MARKER.len()).min(total);
            let keep = fair_shares(&responses.iter().map(Vec::len).collect::<Vec<_>>(), total - cut);
            let shortened: Vec<String> =
                responses.iter().zip(&keep).map(|(ids, &k)| self.keep_ends(ids, k)).collect::<Result<_, _>>()?;
            let candidate = with_responses(item, &shortened);
            let (input, ids) = tokenized_input(tokenizer, self.template.as_ref(), protocol, &candidate)?;
            prompt_tokens = ids.len();
            if prompt_tokens <= budget {
                return Ok((input, ids, true));
            }
            if cut == total {
                break;
            }
        }
        Err(JudgeError::QueryTooLong { prompt_tokens, max_new_tokens, budget })
    }

    /// The first and last `keep / 2` tokens of `ids` around the truncation marker.
    fn keep_ends(&self, ids: &[u32], keep: usize) -> Result<String, JudgeError> {
        if keep >= ids.len() {
            return Ok(self.engine.tokenizer.decode(ids).map_err(EngineError::from)?);
        }
        let head = keep.div_ceil(2);
        let tail = keep - head;
        let decode = |part: &[u32]| self.engine.tokenizer.decode(part).map_err(EngineError::from);
        Ok(format!("{}{TRUNCATION_MARKER}{}", decode(&ids[..head])?, decode(&ids[ids.len() - tail..])?))
    }

    /// Judges one item, streaming the critique through `on_text`.
    pub async fn judge(
        &mut self,
        protocol: Protocol,
        item: &Item,
        options: &JudgeOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Judgement, JudgeError> {
        let (_, ids, truncated) = self.prepare(protocol, item, options)?;
        let generate = GenerateOptions {
            max_tokens: options.max_new_tokens,
            sampling: Sampling::Greedy,
            cancel: options.cancel.clone(),
        };
        let generation = self.engine.generate_ids(&ids, &generate, on_text).await?;
        Ok(judgement(protocol, generation, truncated))
    }

    /// Judges a pair as given and with the responses exchanged, as two sequences of one
    /// batch when the engine has two slots (else one after the other). The swapped input
    /// shares the forward one's prefix up to the first response, which is computed once.
    pub async fn judge_swapped(
        &mut self,
        protocol: Protocol,
        item: &Item,
        options: &JudgeOptions,
        on_text: &mut dyn FnMut(Order, &str),
    ) -> Result<SwapJudgement, JudgeError> {
        let mut judged = None;
        self.judge_batch(protocol, std::slice::from_ref(item), true, options, &mut |_, event| match event {
            JudgeEvent::Text(order, piece) => on_text(order, piece),
            JudgeEvent::Judged(outcome) => judged = Some(outcome),
        })
        .await?;
        match judged.expect("judge_batch reports every item") {
            Ok(Outcome::Both(pair)) => Ok(pair),
            Ok(Outcome::One(_)) => unreachable!("a swapped item is judged in both orders"),
            Err(error) => Err(error),
        }
    }

    /// Judges many items together, up to the engine's sequence slots at a time (and with
    /// `swap`, each pair in both orders as two sequences of the batch), reporting each
    /// item's critique text as it comes and its outcome as soon as all its orders are done
    /// through `on_event`; an item that cannot be judged (too long for the context) is
    /// reported at once. Only a GPU failure ends the batch early.
    pub async fn judge_batch(
        &mut self,
        protocol: Protocol,
        items: &[Item],
        swap: bool,
        options: &JudgeOptions,
        on_event: &mut dyn FnMut(usize, JudgeEvent),
    ) -> Result<(), JudgeError> {
        let orders = if swap { 2 } else { 1 };
        // Each prompt's (item, order, truncated).
        let mut prompts = Vec::new();
        let mut sources = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let prepared: Result<Vec<_>, JudgeError> = (0..orders)
                .map(|order| {
                    let item = if order == 0 { item.clone() } else { item.swapped().ok_or(JudgeError::NotAPair)? };
                    self.prepare(protocol, &item, options)
                })
                .collect();
            match prepared {
                Ok(prepared) => {
                    for (order, (_, ids, truncated)) in prepared.into_iter().enumerate() {
                        prompts.push(ids);
                        sources.push((index, order, truncated));
                    }
                }
                Err(error) => on_event(index, JudgeEvent::Judged(Err(error))),
            }
        }
        let generate = GenerateOptions {
            max_tokens: options.max_new_tokens,
            sampling: Sampling::Greedy,
            cancel: options.cancel.clone(),
        };
        // A pair's judgements as given and swapped, until both are done.
        let mut halves: Vec<[Option<Judgement>; 2]> = vec![[None, None]; items.len()];
        let result = self
            .engine
            .generate_batch(&prompts, &generate, &mut |prompt, event| {
                let (index, order, truncated) = sources[prompt];
                let result = match event {
                    BatchEvent::Text(piece) => {
                        let order = if order == 0 { Order::Forward } else { Order::Swapped };
                        return on_event(index, JudgeEvent::Text(order, piece));
                    }
                    BatchEvent::Finished(result) => result,
                };
                let mut on_judged = |outcome| on_event(index, JudgeEvent::Judged(outcome));
                let judged = match result {
                    Ok(generation) => judgement(protocol, generation, truncated),
                    Err(error) => return on_judged(Err(error.into())),
                };
                if !swap {
                    return on_judged(Ok(Outcome::One(judged)));
                }
                halves[index][order] = Some(judged);
                if let [Some(_), Some(_)] = &halves[index] {
                    let [forward, swapped] = std::mem::take(&mut halves[index]).map(|half| half.expect("done"));
                    on_judged(Ok(Outcome::Both(both_orders(forward, swapped))));
                }
            })
            .await;
        result.map(|_| ()).map_err(JudgeError::from)
    }
}

/// What [`Judge::judge_batch`] reports for an item of the batch.
pub enum JudgeEvent<'a> {
    /// Newly completed critique text of one of the item's orders.
    Text(Order, &'a str),
    /// The item is judged (in both orders, with swap), or could not be.
    Judged(Result<Outcome, JudgeError>),
}

/// What judging one item produced: one judgement, or a pair judged in both orders.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    One(Judgement),
    Both(SwapJudgement),
}

/// A pair's two judgements, the swapped one's verdict mapped back and the two combined.
fn both_orders(forward: Judgement, swapped: Judgement) -> SwapJudgement {
    let first = forward.verdict.winner();
    let swapped_mapped = swapped.verdict.winner().map(Winner::swapped);
    let consistent = first.is_some() && first == swapped_mapped;
    let combined = match (first, swapped_mapped) {
        (Some(a), Some(b)) if a == b => Some(a),
        (Some(_), Some(_)) => Some(Winner::Tie),
        (one, other) => one.or(other),
    };
    let shared_prefix_tokens = swapped.reused_tokens;
    // Measured at the forward pass's prefill rate: the swapped pass prefills only the
    // few tokens after the shared prefix, too few for a steady rate.
    let prefill_saved_s =
        if forward.prefill_tok_s > 0.0 { shared_prefix_tokens as f64 / forward.prefill_tok_s } else { 0.0 };
    let kind = forward.verdict;
    SwapJudgement {
        swapped_mapped: kind.with_winner(swapped_mapped),
        combined: kind.with_winner(combined),
        forward,
        swapped,
        consistent,
        shared_prefix_tokens,
        prefill_saved_s,
    }
}

/// The model input for `item` in `template`, and the ids the judge feeds for it (before
/// any truncation). The user message is tokenized as text: special tokens count only where
/// the template puts them, so a query or response cannot end the user turn or speak as the
/// assistant ([`Tokenizer::encode_chat`]). Needs no GPU.
pub fn tokenized_input(
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    protocol: Protocol,
    item: &Item,
) -> Result<(String, Vec<u32>), JudgeError> {
    let chat = chat_input(protocol, item, template)?;
    let ids = tokenizer.encode_chat(&chat).map_err(EngineError::from)?;
    Ok((chat.text, ids))
}

/// The judgement a generation gives: its critique is the text before EOS.
fn judgement(protocol: Protocol, generation: Generation, truncated: bool) -> Judgement {
    let critique = generation.content.clone();
    Judgement {
        protocol,
        verdict: Verdict::parse(protocol, &critique),
        prompt_tokens: generation.prompt_tokens,
        reused_tokens: generation.reused_tokens,
        generated_tokens: generation.ids.len(),
        truncated,
        finish: generation.finish,
        time_to_first_token_s: generation.prefill_seconds,
        prefill_tok_s: generation.prefill_tokens_per_second(),
        decode_tok_s: generation.decode_tokens_per_second(),
        critique,
    }
}

fn responses(item: &Item) -> Vec<&str> {
    match item {
        Item::Pair { response1, response2, .. } => vec![response1, response2],
        Item::Single { response, .. } => vec![response],
    }
}

fn with_responses(item: &Item, shortened: &[String]) -> Item {
    let mut item = item.clone();
    match &mut item {
        Item::Pair { response1, response2, .. } => {
            *response1 = shortened[0].clone();
            *response2 = shortened[1].clone();
        }
        Item::Single { response, .. } => *response = shortened[0].clone(),
    }
    item
}

/// How many tokens each response keeps so that together they keep `total`: the longest
/// are cut first, to a common cap (shorter ones stay whole).
fn fair_shares(lengths: &[usize], total: usize) -> Vec<usize> {
    let kept = |cap: usize| lengths.iter().map(|&l| l.min(cap)).sum::<usize>();
    let (mut low, mut high) = (0, lengths.iter().copied().max().unwrap_or(0));
    while low < high {
        let cap = (low + high).div_ceil(2);
        if kept(cap) <= total {
            low = cap
        } else {
            high = cap - 1
        }
    }
    lengths.iter().map(|&l| l.min(low)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_shares_cut_the_longest_first() {
        assert_eq!(fair_shares(&[100, 10], 60), vec![50, 10]);
        assert_eq!(fair_shares(&[40, 40], 60), vec![30, 30]);
        assert_eq!(fair_shares(&[40, 40], 80), vec![40, 40]);
        assert_eq!(fair_shares(&[40, 40], 0), vec![0, 0]);
        assert!(fair_shares(&[7, 5], 9).iter().sum::<usize>() <= 9);
    }
}

//! The verdict a critique ends with: which response won, or the rating (Auto-J); the score or
//! the preferred response (Prometheus 2, after Auto-J's); then the newer judges' (Skywork-Critic,
//! CompassJudger-1, Selene Mini, Flow-Judge), each ported from its reference's parser.
//!
//! On well-formed output these agree with Auto-J's own extractors: the pairwise verdict follows
//! the LAST "final decision is" (or "最终决定是"), the rating is the LAST "Rating: [[x]]". Where those silently
//! fail they are tolerant: any case, extra whitespace and line breaks, markdown emphasis
//! (`**Response 1**`, `*tie*`, `` `Response 2` ``), "Response1", a colon after "is", trailing
//! punctuation, full-width forms (`：`, `［［８］］`), the Chinese forms the zh prompts ask for
//! (`最终决定是回应1/回应2/平局`, `评分: [[5]]` with or without the space, which Auto-J's Chinese
//! parser misses) and spaces inside the brackets (`[[ 8 ]]`).
//!
//! "Last wins" counts only statements that name a verdict: a later "the final decision is clear"
//! or an echo of the instructions ("Response 1 / Response 2 / Tie", "[[rating]]") does not hide
//! an earlier decision. A rating outside 1-10 is no rating (Auto-J's 0.0 for "none" never
//! appears); a labelled rating (`Rating:`, `评分:`, `打分:`, `Score:`) beats a bare `[[x]]`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::format::is_python_space;

/// The pairwise verdict, in the order the responses were shown to the judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    Response1,
    Response2,
    Tie,
}

impl Winner {
    /// The verdict on the original order, given one on the swapped order.
    pub fn swapped(self) -> Winner {
        match self {
            Winner::Response1 => Winner::Response2,
            Winner::Response2 => Winner::Response1,
            Winner::Tie => Winner::Tie,
        }
    }

    /// `response1`, `response2` or `tie` (the serialized form).
    pub fn name(self) -> &'static str {
        match self {
            Winner::Response1 => "response1",
            Winner::Response2 => "response2",
            Winner::Tie => "tie",
        }
    }

    /// Auto-J's label encoding (test-data `label`, its parser's result): 0 = response 1,
    /// 1 = response 2, 2 = tie.
    pub fn from_autoj_label(label: i64) -> Option<Winner> {
        match label {
            0 => Some(Winner::Response1),
            1 => Some(Winner::Response2),
            2 => Some(Winner::Tie),
            _ => None,
        }
    }

    pub fn autoj_label(self) -> i64 {
        match self {
            Winner::Response1 => 0,
            Winner::Response2 => 1,
            Winner::Tie => 2,
        }
    }
}

impl fmt::Display for Winner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The pairwise verdict of a critique in English or Chinese; `None` when it states none.
pub fn parse_pairwise(critique: &str) -> Option<Winner> {
    let text = normalize(critique);
    let mut ends: Vec<usize> = Vec::new();
    for (at, _) in text.match_indices("final") {
        ends.extend(english_marker_end(&text, at + "final".len()));
    }
    for (at, _) in text.match_indices("最终决定") {
        ends.extend(chinese_marker_end(&text, at + "最终决定".len()));
    }
    ends.sort_unstable();
    ends.into_iter().rev().find_map(|end| verdict_at(&text[end..]))
}

/// The rating (1 to 10, decimals allowed) of a critique in English or Chinese; `None` when it
/// gives none or one outside 1-10.
pub fn parse_rating(critique: &str) -> Option<f32> {
    let text = normalize(critique);
    // Linear in the text, whatever it holds: each `[[` finds its `]` by binary search, only
    // short bracket contents are read, and a run of decoration before many `[[` is skipped once.
    let closes: Vec<usize> = text.match_indices(']').map(|(at, _)| at).collect();
    let mut decoration = DecorationRuns { text: &text, last: None };
    let mut bare = None;
    for (at, _) in text.rmatch_indices("[[") {
        let open = at + 2;
        let Some(&close) = closes.get(closes.partition_point(|&c| c < open)) else { continue };
        if close - open > MAX_RATING_BYTES {
            continue;
        }
        let Some(value) = rating_number(&text[open..close]) else { continue };
        if is_labelled(&text[..decoration.start_of_run_ending_at(at)]) {
            return in_range(value);
        }
        bare.get_or_insert(value);
    }
    bare.and_then(in_range)
}

/// The longest text between `[[` and `]` read as a rating: a number with some padding,
/// emphasis and a unit (`[[ **8.5/10** ]]`).
const MAX_RATING_BYTES: usize = 64;

/// Where the run of decoration characters ending at a position starts, for positions asked
/// right to left: each run is scanned once, however many positions fall inside it.
struct DecorationRuns<'a> {
    text: &'a str,
    /// The last run found, `start..end`.
    last: Option<(usize, usize)>,
}

impl DecorationRuns<'_> {
    fn start_of_run_ending_at(&mut self, end: usize) -> usize {
        match self.last {
            Some((start, last_end)) if (start..=last_end).contains(&end) => start,
            _ => {
                let start = self.text[..end].trim_end_matches(is_decoration).len();
                self.last = Some((start, end));
                start
            }
        }
    }
}

/// Markdown emphasis marks.
const EMPHASIS: &str = "*_`";

/// Characters around a verdict that carry no meaning: whitespace, markdown emphasis, quotes,
/// brackets and colons.
fn is_decoration(c: char) -> bool {
    c.is_whitespace() || "*_`\"'“”‘’「」『』《》[(:".contains(c)
}

fn skip_decoration(text: &str) -> &str {
    text.trim_start_matches(is_decoration)
}

/// Whitespace and markdown emphasis only (a colon still counts).
fn skip_emphasis(text: &str) -> &str {
    text.trim_start_matches(|c: char| c.is_whitespace() || EMPHASIS.contains(c))
}

/// Lowercases ASCII, folds full-width ASCII forms (`：`, `［`, `１`) to ASCII and odd spaces to
/// a plain space, so the matchers see one spelling.
fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c if c.is_whitespace() && c != '\n' => ' ',
            c => c,
        })
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// After "final": whitespace, "decision", then "is". "The final decision:" alone is no
/// marker: Auto-J writes it as the heading of its last section, before the decision sentence.
fn english_marker_end(text: &str, after_final: usize) -> Option<usize> {
    let rest = &text[after_final..];
    let rest = rest.strip_prefix(char::is_whitespace)?.trim_start();
    let rest = skip_emphasis(rest.strip_prefix("decision")?).strip_prefix("is")?;
    if rest.starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    Some(text.len() - rest.len())
}

/// After "最终决定": "是" or "为" (a bare "最终决定：" is a heading, as in English).
fn chinese_marker_end(text: &str, after_marker: usize) -> Option<usize> {
    let rest = skip_emphasis(&text[after_marker..]).strip_prefix(['是', '为'])?;
    Some(text.len() - rest.len())
}

/// The verdict a decision statement begins with.
fn verdict_at(rest: &str) -> Option<Winner> {
    let rest = skip_decoration(rest);
    let (winner, after) = if let Some(after) = ["response", "回应", "回复"].iter().find_map(|w| rest.strip_prefix(w))
    {
        let after = skip_decoration(after);
        let winner = match after.chars().next()? {
            '1' => Winner::Response1,
            '2' => Winner::Response2,
            _ => return None,
        };
        let after = &after[1..];
        if after.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        (winner, after)
    } else {
        let rest = rest.strip_prefix("a ").map(str::trim_start).unwrap_or(rest);
        let after = ["tied", "tie", "两者持平", "平局", "持平"].iter().find_map(|w| rest.strip_prefix(w))?;
        if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        (Winner::Tie, after)
    };
    // "Response 1 / Response 2 / Tie" repeats the instructions; it decides nothing.
    if skip_decoration(after).starts_with('/') {
        return None;
    }
    Some(winner)
}

/// The number inside `[[…]]`: optional emphasis and spaces around it, an optional "/10" or
/// "分" after it. `None` when it is not a number (e.g. the template's `[[rating]]`).
fn rating_number(inside: &str) -> Option<f32> {
    let trim = |s: &str| s.trim_matches(|c: char| c.is_whitespace() || EMPHASIS.contains(c)).to_owned();
    let mut number = trim(inside);
    for suffix in ["分", "/10"] {
        if let Some(stripped) = number.strip_suffix(suffix) {
            number = trim(stripped);
        }
    }
    let digits = number.strip_prefix(['-', '+']).unwrap_or(&number);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(whole) && all_digits(fraction)) {
        return None;
    }
    number.parse().ok()
}

/// Whether the text before `[[`, its decoration skipped, ends with a rating label (`rating`, `评分`, `score`).
fn is_labelled(before: &str) -> bool {
    ["rating", "score", "评分", "打分", "得分"].iter().any(|label| before.ends_with(label))
}

fn in_range(value: f32) -> Option<f32> {
    (1.0..=10.0).contains(&value).then_some(value)
}

/// prometheus-eval's `_parse_output_absolute` pattern (parser.py), flags `IGNORECASE | VERBOSE`:
/// a marker, then the number at the very end of the output. `$` without `MULTILINE` also
/// matches before a final newline in Python; the `\s*` before it takes that newline here.
static SCORE_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)
        (?: \[RESULT\] | \[SCORE\] | Score:? | score:? | Result:? | \[Result\]:? | score\s+of )
        \s*
        (?: \( | \[ | \s )*
        (\d+)
        (?: (?: \) | \] | \s | $ ) | (?: /\s*5 | \s*out\s*of\s*5 ) )?
        (?: \s*$ )",
    )
    .expect("valid pattern")
});

/// prometheus-eval's `_parse_output_relative` pattern, flags `IGNORECASE | VERBOSE | MULTILINE`:
/// a marker, then `A` or `B` at the end of a line.
static PREFERENCE_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?imx)
        (?: \[RESULT\] | \[RESULT:\s* | \[Response\s+ | \[Result\](?:\s+Response)? | \[Result:\s* | (?:^|\n)Result:?\s* )
        \s*
        (A|B)
        (?: \] )?
        (?: \s*$ )",
    )
    .expect("valid pattern")
});

/// The 1-5 score of a Prometheus absolute grading; `None` when it states none or one outside 1-5.
///
/// The same result as prometheus-eval's `parse_output(output, "absolute")` wherever that finds
/// a score (its first match decides, and a number outside 1-5 there is no score, even when a
/// later one is valid). Where it finds none, emphasis marks (`*`, `_`, `` ` ``) and a final
/// period are ignored and the pattern tried again (`[RESULT] **4**.`). A score in digits
/// other than ASCII 0-9 is not read (prometheus-eval reads any Unicode decimal digit).
pub fn parse_score(output: &str) -> Option<u8> {
    let score = |text: &str| {
        let digits = SCORE_PATTERN.captures(text)?.get(1)?.as_str();
        // Python's int() reads leading zeros; anything longer than one digit after them is
        // out of range.
        let score = match digits.trim_start_matches('0').as_bytes() {
            [digit @ b'1'..=b'5'] => Some(digit - b'0'),
            _ => None,
        };
        Some(score)
    };
    match score(output) {
        Some(found) => found,
        None => score(&without_emphasis(output)).flatten(),
    }
}

/// The response a Prometheus relative grading prefers: `A` is [`Winner::Response1`], `B`
/// [`Winner::Response2`]; `None` when it states none.
///
/// The same result as prometheus-eval's `parse_output(output, "relative")` wherever that finds
/// one (the first match decides). Where it finds none, emphasis marks and a final period are
/// ignored and the pattern tried again (`[RESULT] **A**.`).
pub fn parse_preference(output: &str) -> Option<Winner> {
    let preference = |text: &str| {
        let letter = PREFERENCE_PATTERN.captures(text)?.get(1)?.as_str();
        Some(if letter.eq_ignore_ascii_case("a") { Winner::Response1 } else { Winner::Response2 })
    };
    preference(output).or_else(|| preference(&without_emphasis(output)))
}

/// The output without markdown emphasis marks and with one final period dropped.
fn without_emphasis(output: &str) -> String {
    let plain: String = output.chars().filter(|c| !EMPHASIS.contains(*c)).collect();
    let end = plain.trim_end();
    match end.strip_suffix('.') {
        Some(before) => before.to_owned(),
        None => plain,
    }
}

/// The response Skywork-Critic or CompassJudger-1 prefers, as rm-gallery 0.1.7's
/// `SkyworkCriticTemplate.parse` and opencompass' `JudgerBenchEvaluator.get_judge_result`
/// (AlignBench prompts) read it alike: `[[A]]` anywhere in the output is A, else `[[B]]`
/// anywhere is B; `None` when neither appears.
pub fn parse_bracketed_choice(output: &str) -> Option<Winner> {
    if output.contains("[[A]]") {
        Some(Winner::Response1)
    } else if output.contains("[[B]]") {
        Some(Winner::Response2)
    } else {
        None
    }
}

/// The score of a Selene Mini absolute grading, as its model card's cookbook
/// (`parse_atla_response`, atla-ai/selene-mini `cookbooks/HF_Quickstart_Absolute_Scoring.ipynb`)
/// reads it: of the non-blank lines, stripped, the last that starts with `**Result:**`, with
/// every `**Result:**` removed, as an integer; `None` when there is no such line or when any
/// such line is no integer (the cookbook's `int()` raises and it returns no score). webjudge
/// reads ASCII digits only, and a score outside 1-5 is no score (docs/judges.md).
pub fn parse_selene_score(output: &str) -> Option<u8> {
    let mut score = None;
    for result in selene_results(output) {
        score = Some(python_int(&result)?);
    }
    score.and_then(|score| u8::try_from(score).ok()).filter(|score| (1..=5).contains(score))
}

/// The response a Selene Mini pairwise grading prefers: the cookbook's rule for scores
/// applied to the letter (the card gives no parser for it): the last `**Result:**` line's
/// text, `A` or `B`.
pub fn parse_selene_preference(output: &str) -> Option<Winner> {
    match selene_results(output).last()?.as_str() {
        "A" => Some(Winner::Response1),
        "B" => Some(Winner::Response2),
        _ => None,
    }
}

/// The answer of a Selene Mini classification: the cookbook's rule for scores applied to
/// the answer (the card gives no parser for it): the last `**Result:**` line's text, `Yes`
/// (true) or `No` (false).
pub fn parse_selene_answer(output: &str) -> Option<bool> {
    match selene_results(output).last()?.as_str() {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

/// What follows `**Result:**` on each line that starts with it, in order:
/// `parse_atla_response`'s `line.replace("**Result:**", "").strip()`.
fn selene_results(output: &str) -> impl Iterator<Item = String> + '_ {
    const RESULT: &str = "**Result:**";
    output
        .split('\n')
        .map(python_strip)
        .filter(|line| line.starts_with(RESULT))
        .map(|line| python_strip(&line.replace(RESULT, "")).to_owned())
}

/// Python's `str.strip()`.
fn python_strip(text: &str) -> &str {
    text.trim_matches(is_python_space)
}

/// Python's `int()` of a string, for ASCII digits: surrounding whitespace, a sign, and single
/// underscores between digits.
fn python_int(text: &str) -> Option<i64> {
    let text = python_strip(text);
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    let value: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

/// flow-judge 0.1.2's `EvalOutput.parse` patterns (`eval_data_types.py`, `re.DOTALL`), with
/// Python's `\s` (which also takes U+001C to U+001F).
static FLOW_FEEDBACK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<feedback>[\s\x1c-\x1f]*(.*?)[\s\x1c-\x1f]*</feedback>").expect("valid pattern"));
static FLOW_SCORE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<score>[\s\x1c-\x1f]*(\d+)[\s\x1c-\x1f]*</score>").expect("valid pattern"));

/// The score of a Flow-Judge evaluation, as flow-judge's `EvalOutput.parse` reads it: the
/// first `<score>N</score>`, and only when a `<feedback>…</feedback>` is there too (else its
/// score is -1, a failure: `None` here). A score in digits other than ASCII 0-9, or over 255,
/// is no score (docs/judges.md).
pub fn parse_flow_score(output: &str) -> Option<u8> {
    FLOW_FEEDBACK.find(output)?;
    FLOW_SCORE.captures(output)?.get(1)?.as_str().parse().ok()
}

/// opencompass' JudgerBench pattern for Arena-Hard verdicts (`get_judge_result`).
static ARENA_VERDICT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[\[([AB<>=]+)\]\]").expect("valid pattern"));

/// The response CompassJudger-1 prefers under JudgerBench's Arena-Hard prompt, as opencompass'
/// `JudgerBenchEvaluator.get_judge_result` reads it: the first `[[…]]` of `A`, `B`, `<`, `>`,
/// `=`, tested for `A>>B`, `A>B`, `A=B`, `B>A`, `B>>A` in that order (as substrings); `None`
/// when none matches. opencompass scores the five 2, 1, 0, -1, -2; webjudge keeps the
/// direction: A for 2 and 1, a tie for 0, B for -1 and -2 (docs/judges.md).
pub fn parse_arena_verdict(output: &str) -> Option<Winner> {
    let verdict = ARENA_VERDICT.captures(output)?.get(1)?.as_str();
    [
        ("A>>B", Winner::Response1),
        ("A>B", Winner::Response1),
        ("A=B", Winner::Tie),
        ("B>A", Winner::Response2),
        ("B>>A", Winner::Response2),
    ]
    .into_iter()
    .find_map(|(label, winner)| verdict.contains(label).then_some(winner))
}

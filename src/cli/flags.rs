//! Parsers of numeric flags (and `--matvec`'s), for `#[arg(value_parser = ...)]`. A refusal names the flag
//! (clap adds it) and the accepted range: `invalid value '0' for '--max-tokens
//! <MAX_TOKENS>': expected a whole number in 1..=4294967295`. Numeric flags also set
//! `allow_negative_numbers`, so that `-1` reaches the parser instead of reading as a flag.

use std::ops::RangeInclusive;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use webjudge::kernels::MatvecPath;

/// The most tokens, positions, rows or runs a count flag takes: token ids and positions
/// are 32-bit on the GPU, and no run needs more of anything else.
pub const MAX_COUNT: u64 = u32::MAX as u64;

/// A whole number in `range`, as a `T`. Parsed wider than any flag's type, so that a
/// negative or huge number gets the range too.
pub fn whole<T: TryFrom<u64>>(
    range: RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        let refusal = || format!("expected a whole number in {}..={}", range.start(), range.end());
        let number = text.trim().parse::<i128>().map_err(|_| refusal())?;
        let number = u64::try_from(number).ok().filter(|n| range.contains(n)).ok_or_else(refusal)?;
        T::try_from(number).map_err(|_| refusal())
    }
}

/// A number that `check` accepts, whose refusal states the range.
pub fn number<E: std::fmt::Display + 'static>(
    check: fn(f32) -> Result<f32, E>,
) -> impl Fn(&str) -> Result<f32, String> + Clone + Send + Sync + 'static {
    // What is not a number is refused as NaN is, with the same message.
    move |text| check(text.trim().parse().unwrap_or(f32::NAN)).map_err(|e| e.to_string())
}

/// `--matvec`: one of [`MatvecPath::NAMES`], which `--help` lists.
pub fn matvec_path() -> impl TypedValueParser<Value = MatvecPath> {
    PossibleValuesParser::new(MatvecPath::NAMES).try_map(|name| name.parse::<MatvecPath>())
}

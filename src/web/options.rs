//! Reading the plain JS objects the API takes (inputs and options). Every wrong type or
//! value is an `InvalidInput` error naming the field, never a silent default.

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::AbortSignal;

use super::WebError;
use crate::judge::{BinaryRubric, FlowMetric, JudgeFamily, Protocol, ProtocolError, Rubric, ScoreRubric};

/// A field of `object`; `None` when absent, `undefined` or `null`.
pub fn field(object: Option<&Object>, name: &str) -> Option<JsValue> {
    let value = Reflect::get(object?, &name.into()).ok()?;
    (!value.is_undefined() && !value.is_null()).then_some(value)
}

fn wrong(name: &str, expected: &str) -> WebError {
    WebError::InvalidInput(format!("{name} must be {expected}"))
}

pub fn string(object: Option<&Object>, name: &str) -> Result<String, WebError> {
    field(object, name).and_then(|v| v.as_string()).ok_or_else(|| wrong(name, "a string"))
}

pub fn opt_string(object: Option<&Object>, name: &str) -> Result<Option<String>, WebError> {
    field(object, name).map(|v| v.as_string().ok_or_else(|| wrong(name, "a string"))).transpose()
}

pub fn opt_bool(object: Option<&Object>, name: &str) -> Result<Option<bool>, WebError> {
    field(object, name).map(|v| v.as_bool().ok_or_else(|| wrong(name, "true or false"))).transpose()
}

/// A whole number of at least `min` (and at most 2^32, beyond any sensible setting).
pub fn opt_count(object: Option<&Object>, name: &str, min: usize) -> Result<Option<usize>, WebError> {
    let Some(value) = field(object, name) else { return Ok(None) };
    let expected = format!("a whole number of at least {min}");
    let number = value.as_f64().ok_or_else(|| wrong(name, &expected))?;
    if number.fract() != 0.0 || number < min as f64 || number > u32::MAX as f64 {
        return Err(WebError::InvalidInput(format!("{name} must be {expected}, not {number}")));
    }
    Ok(Some(number as usize))
}

pub fn opt_function(object: Option<&Object>, name: &str) -> Result<Option<Function>, WebError> {
    field(object, name).map(|v| v.dyn_into::<Function>().map_err(|_| wrong(name, "a function"))).transpose()
}

pub fn opt_signal(object: Option<&Object>, name: &str) -> Result<Option<AbortSignal>, WebError> {
    field(object, name).map(|v| v.dyn_into::<AbortSignal>().map_err(|_| wrong(name, "an AbortSignal"))).transpose()
}

/// An argument that must be an object.
pub fn object(value: &JsValue, name: &str) -> Result<Object, WebError> {
    value.dyn_ref::<Object>().cloned().ok_or_else(|| wrong(name, "an object"))
}

/// A protocol by its name (`prometheus_absolute`, …).
pub fn opt_protocol(object: Option<&Object>, name: &str) -> Result<Option<Protocol>, WebError> {
    let Some(protocol) = opt_string(object, name)? else { return Ok(None) };
    protocol.parse().map(Some).map_err(|e: ProtocolError| WebError::InvalidInput(format!("{name}: {e}")))
}

/// A judge family by its name (`selene`, …).
pub fn opt_family(object: Option<&Object>, name: &str) -> Result<Option<JudgeFamily>, WebError> {
    let Some(family) = opt_string(object, name)? else { return Ok(None) };
    family.parse().map(Some).map_err(|e: ProtocolError| WebError::InvalidInput(format!("{name}: {e}")))
}

/// A rubric: a built-in rubric's name or a rubric's text (a string), an object with
/// `criteria` and `score1_description` to `score5_description`, or a Flow-Judge metric
/// (`criteria` and `rubric: [{ score, description }]`), or a Yes/No rubric (`criteria`,
/// `yes_description`, `no_description`); the message is the CLI's.
pub fn rubric(value: JsValue) -> Result<Rubric, WebError> {
    if let Some(text) = value.as_string() {
        return Ok(Rubric::Text(text));
    }
    if !value.is_object() {
        return Err(ProtocolError::BadRubric.into());
    }
    serde_wasm_bindgen::from_value::<ScoreRubric>(value.clone())
        .map(Rubric::Fields)
        .or_else(|_| serde_wasm_bindgen::from_value::<FlowMetric>(value.clone()).map(Rubric::Metric))
        .or_else(|_| serde_wasm_bindgen::from_value::<BinaryRubric>(value).map(Rubric::Binary))
        .map_err(|_| ProtocolError::BadRubric.into())
}

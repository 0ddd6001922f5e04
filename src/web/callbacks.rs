//! The JavaScript callbacks of one call: its `AbortSignal` ([`Abort`]) and its streaming
//! callbacks (`onToken`, `onJudged`: [`Stream`]).

use js_sys::Function;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::AbortSignal;

use crate::engine::Cancel;
use crate::judge::session::Order;

/// Ties an optional AbortSignal to the engine's [`Cancel`] flag for one call. The
/// listener fires while generation awaits the GPU; it is removed when the call ends.
pub struct Abort {
    pub cancel: Cancel,
    listener: Option<(AbortSignal, Closure<dyn FnMut()>)>,
}

impl Abort {
    pub fn new(signal: Option<AbortSignal>) -> Self {
        let cancel = Cancel::default();
        let listener = signal.map(|signal| {
            if signal.aborted() {
                cancel.cancel();
            }
            let flag = cancel.clone();
            let closure = Closure::<dyn FnMut()>::new(move || flag.cancel());
            // Adding a listener to an AbortSignal cannot fail.
            let _ = signal.add_event_listener_with_callback("abort", closure.as_ref().unchecked_ref());
            (signal, closure)
        });
        Self { cancel, listener }
    }
}

impl Drop for Abort {
    fn drop(&mut self) {
        if let Some((signal, closure)) = &self.listener {
            let _ = signal.remove_event_listener_with_callback("abort", closure.as_ref().unchecked_ref());
        }
    }
}

/// Calls a JS callback (`onToken`, `onJudged`) as the work reports. If it throws, the work
/// is cancelled and the call rejects with what it threw.
pub struct Stream<'a> {
    callback: Option<Function>,
    cancel: &'a Cancel,
    thrown: Option<JsValue>,
}

impl<'a> Stream<'a> {
    pub fn new(callback: Option<Function>, cancel: &'a Cancel) -> Self {
        Self { callback, cancel, thrown: None }
    }

    pub fn call(&mut self, args: &[JsValue]) {
        let Some(callback) = &self.callback else { return };
        if self.thrown.is_some() {
            return;
        }
        let args: js_sys::Array = args.iter().collect();
        if let Err(error) = callback.apply(&JsValue::NULL, &args) {
            self.thrown = Some(error);
            self.cancel.cancel();
        }
    }

    /// A streamed piece of text, with its order when the call judges a pair.
    pub fn emit(&mut self, piece: &str, order: Option<Order>) {
        if piece.is_empty() {
            return;
        }
        match order {
            None => self.call(&[piece.into()]),
            Some(order) => self.call(&[piece.into(), order_name(order).into()]),
        }
    }

    pub fn finish<T, E: Into<JsValue>>(self, result: Result<T, E>) -> Result<T, JsValue> {
        match self.thrown {
            Some(thrown) => Err(thrown),
            None => result.map_err(Into::into),
        }
    }
}

pub fn order_name(order: Order) -> &'static str {
    match order {
        Order::Forward => "forward",
        Order::Swapped => "swapped",
    }
}

//! Streaming detokenization.
//!
//! Decoding one id at a time does not work: a character may be spread over several
//! byte-level or byte-fallback tokens, and decoders such as SentencePiece's look at
//! neighbouring tokens (the space a `▁` stands for is dropped only at the start). So,
//! like Hugging Face's `TextStreamer` and TGI's `decode_stream`, the stream decodes a
//! short window of recent ids twice, without and with the newest ones, and emits the
//! difference once it no longer ends in an incomplete character (U+FFFD).

use super::{Tokenizer, TokenizerError};

const REPLACEMENT: char = '\u{FFFD}';

#[derive(Clone, Debug, Default)]
pub struct TextStream {
    /// The window: ids from the start of the previous emission on. Older ids are dropped,
    /// since decoding them again would only repeat text already emitted.
    ids: Vec<u32>,
    /// `ids[..read]` has been emitted; `ids[read..]` is held back.
    read: usize,
}

impl TextStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one id and returns the text it completes, often empty while a character is
    /// still incomplete.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let text = self.pending(tokenizer)?;
        // Text that did not grow (a dropped leading space) or ends mid-character stays
        // pending until a later id completes it.
        if text.is_empty() || text.ends_with(REPLACEMENT) {
            return Ok(String::new());
        }
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(text)
    }

    /// Returns whatever is still held back (an incomplete character decodes as U+FFFD)
    /// and starts over.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String, TokenizerError> {
        let text = self.pending(tokenizer)?;
        *self = Self::new();
        Ok(text)
    }

    /// The text the held-back ids add to the emitted ones.
    fn pending(&self, tokenizer: &Tokenizer) -> Result<String, TokenizerError> {
        let emitted = tokenizer.decode(&self.ids[..self.read])?;
        let full = tokenizer.decode(&self.ids)?;
        match full.strip_prefix(emitted.as_str()) {
            Some(new) => Ok(new.to_owned()),
            // SentencePiece's byte fallback decodes a run of byte tokens holding an invalid
            // sequence as one U+FFFD per byte, so invalid bytes after emitted characters
            // rewrite them. Those stay as emitted; the new ids' own text follows.
            None => tokenizer.decode(&self.ids[self.read..]),
        }
    }
}

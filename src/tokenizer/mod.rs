//! Text to token ids and back, on the Hugging Face `tokenizers` library.
//!
//! A model directory carries a `tokenizer.json`; converters that start from a GGUF file
//! build one from its metadata with [`tokenizer_json_from_gguf`]. Generation streams text
//! through [`TextStream`], which only ever emits complete characters.
//!
//! Text someone else wrote (a judged query or response, a chat message) is tokenized as text
//! ([`Tokenizer::encode_chat`], [`Tokenizer::encode_text`]): a special token's string in it stays
//! ordinary text, so it cannot end the user turn or speak as the assistant. Only
//! [`Tokenizer::encode`], for a caller's own raw prompt, turns special-token strings into
//! their ids anywhere.

mod from_gguf;
mod sentencepiece;
mod stream;

pub use from_gguf::tokenizer_json_from_gguf;
pub use sentencepiece::{add_flags, tokenizer_json_from_sentencepiece, SentencePieceModel};
pub use stream::TextStream;

use std::collections::HashSet;
use std::ops::Range;

use tokenizers::normalizer::Range as OriginalRange;
use tokenizers::{Model, Normalizer, OffsetType, PreTokenizedString, PreTokenizer, Token};

use crate::format::gguf::GgufError;
use crate::format::RenderedChat;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("invalid tokenizer.json: {0}")]
    InvalidJson(String),
    #[cfg(not(target_arch = "wasm32"))]
    #[error(transparent)]
    Read(#[from] crate::format::checked_file::ReadError),
    #[error("GGUF metadata has no {0}, which the tokenizer needs")]
    MissingKey(String),
    /// A key of the wrong type (the GGUF reader's error names the key and both types).
    #[error(transparent)]
    WrongType(#[from] GgufError),
    #[error("GGUF metadata {key}: {problem}")]
    InvalidMetadata { key: String, problem: String },
    #[error("tokenizer.ggml.model {0:?} is not supported: webjudge reads \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece) vocabularies")]
    UnknownModel(String),
    #[error("tokenizer.ggml.pre {0:?} is not supported: webjudge knows the byte-level pre-tokenizers \"default\", \"gpt-2\", \"smollm\", \"llama-bpe\", \"llama3\", \"llama-v3\" and \"qwen2\"")]
    UnknownPreTokenizer(String),
    #[error("invalid SentencePiece model: {0}")]
    SentencePiece(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// A loaded `tokenizer.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The added vocabulary (`added_tokens`), longest first: the first one found at a
    /// position is the leftmost-longest match the `tokenizers` library picks.
    added: Vec<AddedToken>,
    /// First bytes of the added tokens, to skip most positions of long texts quickly.
    added_first_bytes: [bool; 256],
}

/// One entry of the added vocabulary, matched by its exact text.
struct AddedToken {
    content: String,
    id: u32,
    special: bool,
    /// The token takes the whitespace before it (`lstrip`) or after it (`rstrip`) with it,
    /// as Phi-3's chat markers take the newline after them.
    lstrip: bool,
    rstrip: bool,
}

/// A byte range of a prompt that becomes one added token's id.
type Marker = (Range<usize>, u32);

impl Tokenizer {
    pub fn from_json(json: &str) -> Result<Self, TokenizerError> {
        let inner = json.parse::<tokenizers::Tokenizer>().map_err(|e| TokenizerError::InvalidJson(e.to_string()))?;
        let mut added: Vec<AddedToken> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| !token.content.is_empty())
            .map(|(id, token)| AddedToken {
                content: token.content,
                id,
                special: token.special,
                lstrip: token.lstrip,
                rstrip: token.rstrip,
            })
            .collect();
        added.sort_by(|a, b| b.content.len().cmp(&a.content.len()).then(a.id.cmp(&b.id)));
        let mut added_first_bytes = [false; 256];
        for token in &added {
            added_first_bytes[usize::from(token.content.as_bytes()[0])] = true;
        }
        Ok(Self { inner, added, added_first_bytes })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, TokenizerError> {
        use crate::format::checked_file;
        Self::from_json(&checked_file::read_to_string(path.as_ref(), checked_file::TOKENIZER)?)
    }

    /// Ids of a raw prompt as Hugging Face's `add_special_tokens=True` gives them: special
    /// tokens written anywhere in the text become their ids, and BOS/EOS are added only
    /// where the tokenizer's post-processor adds them. For the caller's own prompt only;
    /// text from anyone else goes through [`Self::encode_chat`] or [`Self::encode_text`].
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        // `encode_fast` skips offset tracking, which nothing here uses.
        let encoding = self.inner.encode_fast(text, true).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Ids of a rendered chat prompt, what the model sees: added tokens are recognized in the
    /// template's own text as [`Self::encode`] recognizes them, and each message's content
    /// is tokenized as [`Self::encode_text`] does, minus any added token the template uses
    /// (its turn markers, whatever their `special` flag says). BOS/EOS as the post-processor
    /// adds them where `chat.add_special_tokens` says so (a wrapper), else only where the
    /// template wrote them (a Jinja template, as transformers tokenizes its output).
    ///
    /// Where the contents hold no added token's text (and none straddles their edges) the
    /// ids equal those of the whole text tokenized at once: `tokenizers` splits the prompt
    /// at added tokens before normalizing and pre-tokenizing, so each piece between them is
    /// processed on its own there too, and the pieces here keep their offsets in the whole
    /// prompt (a Metaspace pre-tokenizer with `prepend_scheme: "first"` prefixes only the
    /// piece at offset 0, as there). Matching is by exact text, leftmost-longest; a token's
    /// `lstrip` and `rstrip` take the whitespace beside it as `tokenizers` does
    /// ([`Self::strip_whitespace`]); the `single_word` flag and matching after normalization
    /// are not reproduced (the tokenizer.json files webjudge builds set neither; an imported
    /// Hugging Face one may, and then ids can differ next to such a token).
    pub fn encode_chat(&self, chat: &RenderedChat) -> Result<Vec<u32>, TokenizerError> {
        let text = chat.text.as_str();
        let end = text.len()..text.len();
        let mut markers = Vec::new();
        let mut start = 0;
        for content in chat.contents.iter().chain([&end]) {
            markers.extend(self.find_added(&text[start..content.start], start, |_| true));
            start = content.end;
        }
        let template_ids: HashSet<u32> = markers.iter().map(|(_, id)| *id).collect();
        for content in &chat.contents {
            let admit = |token: &AddedToken| !token.special && !template_ids.contains(&token.id);
            markers.extend(self.find_added(&text[content.clone()], content.start, admit));
        }
        markers.sort_by_key(|(range, _)| range.start);
        self.encode_marked(text, &markers, chat.add_special_tokens)
    }

    /// Ids of `text` tokenized as text, without BOS/EOS (Hugging Face's
    /// `add_special_tokens=False` with `split_special_tokens=True`): special tokens' strings
    /// stay text; non-special added tokens, ordinary vocabulary, still match as Hugging
    /// Face and llama.cpp match them.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_marked(text, &self.find_added(text, 0, |token| !token.special), false)
    }

    /// Leftmost-longest occurrences in `text` of the added tokens `admit` accepts, as byte
    /// ranges shifted by `offset` (where `text` starts in the prompt).
    fn find_added(&self, text: &str, offset: usize, admit: impl Fn(&AddedToken) -> bool) -> Vec<Marker> {
        let mut markers = Vec::new();
        let mut at = 0;
        while let Some(next) = text[at..].chars().next() {
            let rest = &text[at..];
            let found = if self.added_first_bytes[usize::from(rest.as_bytes()[0])] {
                self.added.iter().find(|token| admit(token) && rest.starts_with(&token.content))
            } else {
                None
            };
            match found {
                Some(token) => {
                    markers.push((offset + at..offset + at + token.content.len(), token.id));
                    at += token.content.len();
                }
                None => at += next.len_utf8(),
            }
        }
        markers
    }

    /// `markers` (in order) widened over the whitespace their tokens' `lstrip` and `rstrip`
    /// take, as `tokenizers`' `AddedVocabulary::find_matches` widens its matches: back to
    /// the previous marker's end at most, on to the next one's start at most (Unicode
    /// `White_Space`, the `\s` of its regexes).
    fn strip_whitespace(&self, prompt: &str, markers: &[Marker]) -> Vec<Marker> {
        let mut widened: Vec<Marker> = Vec::with_capacity(markers.len());
        for (index, (range, id)) in markers.iter().enumerate() {
            let Some(token) = self.added.iter().find(|t| t.id == *id).filter(|t| t.lstrip || t.rstrip) else {
                widened.push((range.clone(), *id));
                continue;
            };
            let (mut start, mut end) = (range.start, range.end);
            if token.lstrip {
                let previous = widened.last().map_or(0, |(r, _)| r.end);
                let before = &prompt[previous..start];
                start = previous + before.trim_end_matches(char::is_whitespace).len();
            }
            if token.rstrip {
                let next = markers.get(index + 1).map_or(prompt.len(), |(r, _)| r.start);
                let after = &prompt[end..next];
                end = next - after.trim_start_matches(char::is_whitespace).len();
            }
            widened.push((start..end, *id));
        }
        widened
    }

    /// The `tokenizers` pipeline on `prompt` with the added tokens exactly at `markers`
    /// (in order): the text between them normalized, pre-tokenized and tokenized piece by
    /// piece, each piece keeping its offsets in `prompt`.
    fn encode_marked(
        &self,
        prompt: &str,
        markers: &[Marker],
        add_special_tokens: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let markers = &self.strip_whitespace(prompt, markers);
        let encode_error = |e: tokenizers::Error| TokenizerError::Encode(e.to_string());
        let mut pretokenized = PreTokenizedString::from(prompt);
        pretokenized
            .split(|_, whole| {
                let piece = |range: Range<usize>| {
                    whole.slice(OriginalRange::Original(range)).ok_or("an added token off a character boundary")
                };
                let mut pieces = Vec::with_capacity(2 * markers.len() + 1);
                let mut start = 0;
                for (range, id) in markers {
                    pieces.push((piece(start..range.start)?, None));
                    let token = Token::new(*id, prompt[range.clone()].to_owned(), (0, range.len()));
                    pieces.push((piece(range.clone())?, Some(vec![token])));
                    start = range.end;
                }
                pieces.push((piece(start..prompt.len())?, None));
                Ok(pieces)
            })
            .map_err(encode_error)?;
        if let Some(normalizer) = self.inner.get_normalizer() {
            pretokenized.normalize(|piece| normalizer.normalize(piece)).map_err(encode_error)?;
        }
        if let Some(pre_tokenizer) = self.inner.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut pretokenized).map_err(encode_error)?;
        }
        let model = self.inner.get_model();
        pretokenized.tokenize(|piece| model.tokenize(piece.get())).map_err(encode_error)?;
        let encoding = pretokenized.into_encoding(None, 0, OffsetType::None).map_err(encode_error)?;
        let encoding = self.inner.post_process(encoding, None, add_special_tokens).map_err(encode_error)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens included, so a decoded prompt shows what the model saw.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

//! Continuous batching: many prompts generated together, one KV cache slot each. A decode
//! step feeds every running sequence at once (one weight read for all of them, which is
//! what decode is bound by); a new prompt is admitted as soon as a slot frees up, starts
//! from the longest prompt prefix any slot already holds (a pair and its swap share
//! everything before the first response; the Auto-J template is shared by all), and is
//! prefilled a chunk of whole matmul tiles per step, its rest as rows of the decode steps.

use std::collections::VecDeque;

use web_time::Instant;

use super::{reusable_prefix, Cancel, Engine, EngineError, Finish, GenerateOptions, Generation};
use crate::model::{DecodeRow, StepError};
use crate::tokenizer::TextStream;

/// What a batch reports as it runs, for the prompt at an index of the batch.
pub enum BatchEvent<'a> {
    /// Newly completed text of the prompt's generation.
    Text(&'a str),
    /// The generation ended, or could not start (a prompt too long for the context).
    Finished(Result<Generation, EngineError>),
}

/// A prompt that holds a slot.
struct Sequence {
    index: usize,
    slot: usize,
    prompt_tokens: usize,
    /// A running sequence's slot and the length of the prompt prefix to copy from it, once
    /// it holds that much.
    donor: Option<(usize, usize)>,
    /// Prompt tokens in the slot's cache: reused, then prefilled chunk by chunk.
    prefilled: usize,
    reused: usize,
    ids: Vec<u32>,
    stream: TextStream,
    admitted: Instant,
    prefill_seconds: f64,
    /// When the first token was chosen: the decode time runs from here.
    decoding_since: Option<Instant>,
    finish: Option<Finish>,
}

impl Engine {
    /// Generates a continuation of each prompt, up to the model's sequence slots at a time,
    /// reporting text and each finished generation through `on_event` as they come. Only a
    /// GPU failure ends the batch early. With one slot the prompts run one after another on
    /// the single-sequence path. A prompt's greedy output does not depend on the prompts
    /// beside it (each row of a batched step is computed as it would be alone), up to the
    /// rounding of where its prefill chunks start and which of its tokens run as rows.
    pub async fn generate_batch(
        &mut self,
        prompts: &[Vec<u32>],
        options: &GenerateOptions,
        on_event: &mut dyn FnMut(usize, BatchEvent),
    ) -> Result<(), EngineError> {
        if self.model.sequences() == 1 {
            for (index, prompt) in prompts.iter().enumerate() {
                let result =
                    self.generate_ids(prompt, options, &mut |text| on_event(index, BatchEvent::Text(text))).await;
                if let Err(error @ EngineError::Step(StepError::Gpu(_))) = result {
                    return Err(error);
                }
                on_event(index, BatchEvent::Finished(result));
            }
            return Ok(());
        }

        let max_tokens = options.max_tokens.max(1);
        let eos = self.model.architecture().eos_ids.clone();
        let mut waiting = VecDeque::new();
        for (index, prompt) in prompts.iter().enumerate() {
            match self.check_prompt(prompt, max_tokens) {
                Err(error) => on_event(index, BatchEvent::Finished(Err(error))),
                Ok(()) => waiting.push_back(index),
            }
        }
        let mut free: Vec<usize> = (0..self.model.sequences()).rev().collect();
        let mut running: Vec<Sequence> = Vec::new();
        loop {
            if options.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                running.iter_mut().for_each(|sequence| sequence.finish = Some(Finish::Cancelled));
                for index in waiting.drain(..) {
                    on_event(index, BatchEvent::Finished(Ok(cancelled(prompts[index].len()))));
                }
            }
            // Finished sequences free their slots for waiting prompts.
            self.finish_done(&mut running, &mut free, on_event)?;
            while !free.is_empty() {
                let Some(index) = waiting.pop_front() else { break };
                running.push(self.admit(index, &prompts[index], &mut free, &running, prompts));
            }
            if running.is_empty() {
                break;
            }

            // One prefill chunk of whole matmul tiles for each sequence with at least a tile
            // of prompt to go: newly admitted prompts join the decode batch together, and a
            // long prompt holds the others back by one chunk per step.
            let tile = self.model.prefill_tile();
            for i in 0..running.len() {
                if !self.take_prefix(&mut running[i]) {
                    continue;
                }
                let rest = prompts[running[i].index].len() - running[i].prefilled;
                let whole_tiles = rest.min(self.model.prefill_chunk()) / tile * tile;
                if whole_tiles == 0 {
                    continue;
                }
                let sequence = &mut running[i];
                let prompt = &prompts[sequence.index];
                let end = sequence.prefilled + whole_tiles;
                let chunk = &prompt[sequence.prefilled..end];
                // Only the prompt's last chunk chooses a token: the others are not waited for.
                let chosen = match end < prompt.len() {
                    true => {
                        self.model.append_slot(sequence.slot, chunk)?;
                        None
                    }
                    false => Some(self.model.prefill_slot(sequence.slot, chunk, options.sampling).await?),
                };
                self.cached[sequence.slot].extend_from_slice(chunk);
                sequence.prefilled = end;
                if let Some(id) = chosen {
                    self.push_token(sequence, id, max_tokens, &eos, on_event)?;
                }
            }

            // One step of single-token rows: the rest of prompts shorter than a tile (a
            // matmul tile is never run partly empty), then the last token of every decoding
            // sequence, as many as the step has rows for. Prompts go first so that all
            // sequences start early and finish together: a batch's last steps, with only
            // the longest generations left, are its least full. A prompt's last row and a
            // decoding sequence's row choose a token; the row of a prompt's last token starts
            // its generation.
            let mut rows: Vec<DecodeRow> = Vec::new();
            let mut fed: Vec<(usize, usize)> = Vec::new();
            for (i, sequence) in running.iter().enumerate() {
                let rest = prompts[sequence.index].len() - sequence.prefilled;
                let room = self.model.sequences() - rows.len();
                // Sequences waiting for a donor's prefix have not taken it above.
                if rest == 0 || rest >= tile || room == 0 || sequence.donor.is_some() {
                    continue;
                }
                let count = rest.min(room);
                let ids = &prompts[sequence.index][sequence.prefilled..sequence.prefilled + count];
                let last = sequence.prefilled + count == prompts[sequence.index].len();
                rows.extend(ids.iter().enumerate().map(|(k, &id)| DecodeRow {
                    slot: sequence.slot,
                    id,
                    choose: last && k + 1 == count,
                }));
                fed.push((i, count));
            }
            for (i, sequence) in running.iter().enumerate() {
                if sequence.decoding_since.is_some() && sequence.finish.is_none() && rows.len() < self.model.sequences()
                {
                    let id = *sequence.ids.last().expect("a chosen token");
                    rows.push(DecodeRow { slot: sequence.slot, id, choose: true });
                    fed.push((i, 1));
                }
            }
            if rows.is_empty() {
                continue;
            }
            let mut chosen = self.model.decode_batch(&rows, options.sampling).await?.into_iter();
            let mut first_row = 0;
            for (i, count) in fed {
                let sequence = &mut running[i];
                let sequence_rows = &rows[first_row..first_row + count];
                first_row += count;
                self.cached[sequence.slot].extend(sequence_rows.iter().map(|row| row.id));
                if sequence.decoding_since.is_none() {
                    sequence.prefilled += count;
                }
                if sequence_rows.last().is_some_and(|row| row.choose) {
                    let id = chosen.next().expect("an id for each choosing row");
                    self.push_token(sequence, id, max_tokens, &eos, on_event)?;
                }
            }
        }
        Ok(())
    }

    /// Gives prompt `index` a free slot, starting from the longest prefix of it that any
    /// slot holds or will hold: a free slot's own, or a running sequence's, copied over
    /// once that sequence has prefilled it ([`Self::take_prefix`]).
    fn admit(
        &mut self,
        index: usize,
        prompt: &[u32],
        free: &mut Vec<usize>,
        running: &[Sequence],
        prompts: &[Vec<u32>],
    ) -> Sequence {
        let (position, own) = free
            .iter()
            .enumerate()
            .map(|(position, &slot)| (position, reusable_prefix(&self.cached[slot], prompt)))
            .max_by_key(|&(position, reused)| (reused, std::cmp::Reverse(position)))
            .expect("a free slot");
        let slot = free.swap_remove(position);
        // What a running sequence's slot will hold: its prompt (and what it has generated).
        let holds =
            |s: &Sequence| if s.prefilled < prompts[s.index].len() { &prompts[s.index] } else { &self.cached[s.slot] };
        let donor = running
            .iter()
            .map(|s| (s.slot, reusable_prefix(holds(s), prompt)))
            .max_by_key(|&(_, reused)| reused)
            .filter(|&(_, reused)| reused > own);
        let reused = if donor.is_some() { 0 } else { own };
        self.model.truncate_slot(slot, reused);
        self.cached[slot].truncate(reused);
        Sequence {
            index,
            slot,
            prompt_tokens: prompt.len(),
            donor,
            prefilled: reused,
            reused,
            ids: Vec::new(),
            stream: TextStream::new(),
            admitted: Instant::now(),
            prefill_seconds: 0.0,
            decoding_since: None,
            finish: None,
        }
    }

    /// Copies a sequence's shared prefix from its donor's slot once the donor has
    /// prefilled it; false while it has not yet.
    fn take_prefix(&mut self, sequence: &mut Sequence) -> bool {
        let Some((from, len)) = sequence.donor else { return true };
        if self.cached[from].len() < len {
            return false;
        }
        self.model.copy_prefix(from, sequence.slot, len);
        self.cached[sequence.slot] = self.cached[from][..len].to_vec();
        (sequence.prefilled, sequence.reused, sequence.donor) = (len, len, None);
        true
    }

    /// Appends a chosen token to `sequence` (the first starts its decode time), streams its
    /// text and notes whether it ends it.
    fn push_token(
        &self,
        sequence: &mut Sequence,
        id: u32,
        max_tokens: usize,
        eos: &[u32],
        on_event: &mut dyn FnMut(usize, BatchEvent),
    ) -> Result<(), EngineError> {
        if sequence.decoding_since.is_none() {
            sequence.prefill_seconds = sequence.admitted.elapsed().as_secs_f64();
            sequence.decoding_since = Some(Instant::now());
        }
        sequence.ids.push(id);
        on_event(sequence.index, BatchEvent::Text(&sequence.stream.push(&self.tokenizer, id)?));
        if eos.contains(&id) {
            sequence.finish = Some(Finish::Eos);
        } else if sequence.ids.len() >= max_tokens {
            sequence.finish = Some(Finish::Length);
        }
        Ok(())
    }

    /// Reports the sequences that have finished and frees their slots.
    fn finish_done(
        &self,
        running: &mut Vec<Sequence>,
        free: &mut Vec<usize>,
        on_event: &mut dyn FnMut(usize, BatchEvent),
    ) -> Result<(), EngineError> {
        let mut i = 0;
        while i < running.len() {
            let Some(finish) = running[i].finish else {
                i += 1;
                continue;
            };
            let mut sequence = running.remove(i);
            on_event(sequence.index, BatchEvent::Text(&sequence.stream.finish(&self.tokenizer)?));
            let generation = Generation {
                text: self.tokenizer.decode(&sequence.ids)?,
                content: self.content(&sequence.ids, finish)?,
                prompt_tokens: sequence.prompt_tokens,
                reused_tokens: sequence.reused,
                finish,
                prefill_seconds: sequence.prefill_seconds,
                decode_seconds: sequence.decoding_since.map_or(0.0, |since| since.elapsed().as_secs_f64()),
                ids: sequence.ids,
            };
            on_event(sequence.index, BatchEvent::Finished(Ok(generation)));
            free.push(sequence.slot);
        }
        Ok(())
    }
}

/// A generation stopped before it started.
pub(super) fn cancelled(prompt_tokens: usize) -> Generation {
    Generation {
        ids: Vec::new(),
        text: String::new(),
        content: String::new(),
        prompt_tokens,
        reused_tokens: 0,
        finish: Finish::Cancelled,
        prefill_seconds: 0.0,
        decode_seconds: 0.0,
    }
}

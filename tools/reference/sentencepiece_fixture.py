"""Train a tiny SentencePiece BPE model and write Hugging Face goldens for it.

Writes tests/fixtures/spm_bpe.model (a real `tokenizer.model`, BPE with byte fallback, as
LLaMA-2 and Yi ship) and tests/fixtures/spm_bpe_golden.json: the ids transformers'
LlamaTokenizer (converted from that .model) gives with `add_special_tokens=True`, and
`decode(ids)` with special tokens kept.

Run with the reference venv:
    /root/.cache/webjudge/refvenv/bin/python tools/reference/sentencepiece_fixture.py [OUT_DIR]
OUT_DIR defaults to tests/fixtures.
"""

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece as spm
import transformers
from transformers import AutoTokenizer

from tokenizer_fixture import CORPUS as TOKENIZER_CORPUS
from tokenizer_fixture import TEXTS as TOKENIZER_TEXTS
from tokenizer_fixture import write_golden

MODEL_NAME = "spm_bpe.model"
GOLDEN_NAME = "spm_bpe_golden.json"

# The GGUF fixture's corpus and texts, plus lines that give digits, accents and CJK
# characters pieces of their own. Its `<sep>` is a user-defined token that this model lacks.
CORPUS = (
    TOKENIZER_CORPUS.strip()
    + """
Numbers like 0123456789 and 3.14159 appear in text; so do caf\u00e9 and na\u00efve words.
\u4f60\u597d means hello. The final verdict is [[A]] or [[B]] or [[C]] for a tie."""
).split("\n")
TEXTS = [text.replace("<sep>", " ") for text in TOKENIZER_TEXTS]


def train(path: Path) -> None:
    model = io.BytesIO()
    # Corpus repeated so every piece has support; every flag that affects the result pinned.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_writer=model,
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,
        num_threads=1,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "tests" / "fixtures"
    out.mkdir(parents=True, exist_ok=True)
    train(out / MODEL_NAME)

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(out / MODEL_NAME, Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False})
        )
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    generator = f"tools/reference/sentencepiece_fixture.py, transformers {transformers.__version__}, {type(tokenizer).__name__}"
    write_golden(out / GOLDEN_NAME, generator, len(tokenizer), tokenizer, TEXTS)
    print(f"{out / MODEL_NAME}: {(out / MODEL_NAME).stat().st_size} bytes; tokenizer {type(tokenizer).__name__}")


if __name__ == "__main__":
    main()

"""What the tiny random-weight checkpoint fixtures share (mistral_fixture.py,
llama31_fixture.py, phi3_fixture.py): their weights and transformers' greedy generation with
each step's margin and top 5 (phi3_fixture.py also the prompts, cases and golden.json)."""

import json
import shutil

import torch
from transformers import AutoTokenizer


def random_model(new_model, seed):
    """`new_model()` (made after seeding, as the fixtures' seeds were found) with weights of
    scale 1/sqrt(fan_in) (transformers' 0.02 gives near-uniform logits) and norm weights
    around 1, rounded to bfloat16."""
    torch.manual_seed(seed)
    model = new_model()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() == 1:
                parameter.copy_(1 + 0.2 * (2 * torch.rand_like(parameter) - 1))
            elif "embed_tokens" in name:
                parameter.normal_(0, 1)
            else:
                parameter.normal_(0, 1.5 / parameter.shape[1] ** 0.5)
    return model.eval().to(torch.bfloat16)


def generate(model, prompt_ids, new_tokens):
    """Greedy ids after `prompt_ids`, and each step's top-1/top-2 margin and top 5 (id, logit)."""
    ids, steps = list(prompt_ids), []
    with torch.no_grad():
        for _ in range(new_tokens):
            logits = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, 5)
            steps.append({
                "margin": round(float(top.values[0] - top.values[1]), 5),
                "top5": [[int(i), round(float(v), 5)] for i, v in zip(top.indices, top.values)],
            })
            ids.append(int(top.indices[0]))
    return ids[len(prompt_ids):], steps


def wrapped_prompts(tok, texts, **template_options):
    """Each text as the one user message of the tokenizer's chat template: (text, the
    rendered prompt, its ids as transformers tokenizes it)."""
    prompts = []
    for text in texts:
        wrapped = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, **template_options)
        prompts.append((text, wrapped, tok(wrapped, add_special_tokens=False)["input_ids"]))
    return prompts


def greedy_cases(model, prompts, new_tokens):
    """The golden cases of `wrapped_prompts`' prompts, and their smallest top-1/top-2 margin."""
    cases = []
    for text, wrapped, prompt_ids in prompts:
        ids, steps = generate(model, prompt_ids, new_tokens)
        cases.append({"text": text, "wrapped": wrapped, "prompt_ids": prompt_ids, "ids": ids, "steps": steps})
    return cases, min(s["margin"] for c in cases for s in c["steps"])


def write_golden(out, golden, seed):
    """golden.json in `out`, and what it holds and the fixture's sizes on stdout."""
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    for case in golden["cases"]:
        print(f"{case['wrapped']!r}: {len(case['prompt_ids'])} prompt ids {case['prompt_ids']}, greedy {case['ids']}")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"seed {seed}, smallest margin {golden['smallest_margin']:.4f}; {out}: {sizes}")


def template_into_tokenizer_config(directory, **fields):
    """Moves transformers 5's chat_template.jinja into tokenizer_config.json's `chat_template`,
    where transformers 4 wrote it, with `fields` (keys transformers 5 drops)."""
    template = directory / "chat_template.jinja"
    if template.exists():
        path = directory / "tokenizer_config.json"
        tokenizer_config = json.loads(path.read_text())
        tokenizer_config["chat_template"] = template.read_text()
        tokenizer_config.update(fields)
        path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        template.unlink()


def new_fixture(out, tok, as_published, sentencepiece=None):
    """An empty `out` holding the tokenizer's files (and the SentencePiece model), rewritten
    by `as_published`, and the tokenizer read back from them, which the reference uses."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok.save_pretrained(out)
    if sentencepiece:
        shutil.copy(sentencepiece, out / "tokenizer.model")
    as_published(out)
    return AutoTokenizer.from_pretrained(out)

"""What the tiny random-weight checkpoint fixtures share (mistral_fixture.py,
llama31_fixture.py, qwen2_fixture.py, phi3_fixture.py): their files as published, their weights,
the search for a seed whose every greedy step has a clear winner, and transformers' greedy
generation with each step's margin and top 5 in golden.json."""

import json
import pathlib
import shutil

import torch
from transformers import AutoTokenizer


def random_model(new_model, seed):
    """`new_model()` (made after seeding, as the fixtures' seeds were found) with weights of
    scale 1/sqrt(fan_in) (transformers' 0.02 gives near-uniform logits), biases of scale 0.5
    and norm weights around 1, rounded to bfloat16."""
    torch.manual_seed(seed)
    model = new_model()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0, 0.5)
            elif parameter.dim() == 1:
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


def first_seed_with_margins(make_model, model_class, directory, prompts, new_tokens, min_margin, publish,
                            accept=None):
    """The first seed below 1000 whose model `make_model(seed)`, saved to `directory`, rewritten
    by `publish(directory)` as the real checkpoint is published and loaded back in float32 with
    eager attention (so the reference runs on exactly the stored bfloat16 values), has every
    greedy step's top-1/top-2 margin at least `min_margin` on every prompt of `prompts`
    (`wrapped_prompts`'), and passes `accept(model, cases)` where given.
    Returns (seed, model, cases, smallest margin)."""
    for seed in range(1000):
        make_model(seed).save_pretrained(directory)
        publish(pathlib.Path(directory))
        model = model_class.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
        cases, smallest = greedy_cases(model, prompts, new_tokens)
        if smallest >= min_margin and (accept is None or accept(model, cases)):
            return seed, model, cases, smallest
    raise SystemExit(f"no seed below 1000 has every margin >= {min_margin} and passes the fixture's check")


def write_golden(out, golden, seed):
    """golden.json in `out`, and what it holds and the fixture's sizes on stdout."""
    (out / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")
    for case in golden["cases"]:
        print(f"{case['wrapped']!r}: {len(case['prompt_ids'])} prompt ids {case['prompt_ids']}, greedy {case['ids']}")
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"seed {seed}, smallest margin {golden['smallest_margin']:.4f}; {out}: {sizes}")


def rewrite_as_published(directory, edit_config, **tokenizer_fields):
    """Rewrites the files transformers 5 saved in `directory` as the real checkpoint has them
    (written by transformers 4): config.json changed by `edit_config(config)` (a top-level
    rope_theta instead of rope_parameters, and so on), the chat template moved from
    chat_template.jinja into tokenizer_config.json's `chat_template`, with `tokenizer_fields`
    (keys transformers 5 drops)."""
    path = directory / "config.json"
    if path.exists():
        config = json.loads(path.read_text())
        edit_config(config)
        path.write_text(json.dumps(config, indent=2) + "\n")
    template = directory / "chat_template.jinja"
    if template.exists():
        path = directory / "tokenizer_config.json"
        tokenizer_config = json.loads(path.read_text())
        tokenizer_config["chat_template"] = template.read_text()
        tokenizer_config.update(tokenizer_fields)
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

"""What the tiny random-weight checkpoint fixtures share (mistral_fixture.py,
llama31_fixture.py, qwen2_fixture.py): their weights, transformers' greedy generation with
each step's margin and top 5, and the search for a seed whose every step has a clear winner."""

import json
import pathlib

import torch


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


def first_seed_with_margins(make_model, model_class, directory, prompts, new_tokens, min_margin, publish=None):
    """The first seed below 1000 whose model `make_model(seed)`, saved to `directory` (then
    rewritten by `publish(directory)` as the real checkpoint is published) and loaded back in
    float32 with eager attention, so the reference runs on exactly the stored bfloat16 values,
    has every greedy step's top-1/top-2 margin at least `min_margin` on every prompt of
    `prompts` ((text, wrapped text, prompt ids)). Returns (seed, model, cases, smallest margin)."""
    for seed in range(1000):
        make_model(seed).save_pretrained(directory)
        if publish:
            publish(pathlib.Path(directory))
        model = model_class.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
        cases = []
        for text, wrapped, prompt_ids in prompts:
            ids, steps = generate(model, prompt_ids, new_tokens)
            cases.append({"text": text, "wrapped": wrapped, "prompt_ids": prompt_ids, "ids": ids, "steps": steps})
        smallest = min(s["margin"] for c in cases for s in c["steps"])
        if smallest >= min_margin:
            return seed, model, cases, smallest
    raise SystemExit(f"no seed below 1000 has every margin >= {min_margin}")


def chat_prompts(tok, texts, **template_options):
    """(text, the text as a user turn wrapped by the chat template, its ids) per text, as
    transformers renders and tokenizes it."""
    prompts = []
    for text in texts:
        wrapped = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, **template_options)
        prompts.append((text, wrapped, tok(wrapped, add_special_tokens=False)["input_ids"]))
    return prompts


def rewrite_as_published(directory, edit_config, edit_tokenizer_config=None):
    """Rewrites the files transformers 5 saved in `directory` as the real checkpoint has them
    (written by transformers 4): config.json changed by `edit_config(config)` (a top-level
    rope_theta instead of rope_parameters, and so on), the chat template inside
    tokenizer_config.json instead of chat_template.jinja, then changed by
    `edit_tokenizer_config(tokenizer_config)`."""
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
        if edit_tokenizer_config:
            edit_tokenizer_config(tokenizer_config)
        path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
        template.unlink()

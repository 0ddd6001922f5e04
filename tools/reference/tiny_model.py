"""What the tiny random-weight checkpoint fixtures share (mistral_fixture.py,
llama31_fixture.py): their weights and transformers' greedy generation with each step's
margin and top 5."""

import torch


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

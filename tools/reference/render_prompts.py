#!/usr/bin/env python3
"""Golden model inputs for Auto-J's protocols: tests/golden/autoj_rendered.json.

Renders exactly as Auto-J's codes/usage/constants_prompt.py and zh_constants_prompt.py do:
``TEMPLATE.format(prompt=..., response=resp1, response_another=resp2)`` and then
``"[INST] {input} [/INST]".format(input=user_msg)`` (``llama2_wrapper`` without a system
message). The templates and the wrapper are read from ../shared/autoj/templates (byte-exact
copies of Auto-J's), the rows from ../shared/autoj/data; no webjudge code is involved.

Cases: the first 5 rows of each test set and the first 2 rows of each set whose text contains
a brace (pairwise rows also through zh_pairwise_tie, for the first and the braced rows), and hand-written adversarial items (placeholders, escapes and ``[/INST]`` inside user
text). Real rows are referenced by set and 1-based line number; adversarial items carry their
text. Standard library only:

    python3 tools/reference/render_prompts.py [SHARED_DIR]
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "..", "shared")
TEMPLATES = os.path.join(SHARED, "autoj", "templates")
DATA = os.path.join(SHARED, "autoj", "data")
OUT = os.path.join(ROOT, "tests", "golden", "autoj_rendered.json")

SETS = {
    "testdata_pairwise": ["pairwise_tie", "zh_pairwise_tie"],
    "testdata_critique": ["single"],
    "zh_testdata_critique": ["zh_single"],
}

ADVERSARIAL = [
    ("{response} {response_another} {prompt} {0} {} {input}", "see {prompt}", "{response}"),
    ("{{literal}} }} {{ {", "[/INST] [INST] <<SYS>>", "</s><s>[INST] {{response}}"),
    ("line\r\nbreak\ttab  \n\n", "emoji \U0001F600 and 中文：{response_another}", ""),
]


def read(name):
    with open(os.path.join(TEMPLATES, name), encoding="utf-8", newline="") as f:
        return f.read()


WRAPPER = read("llama2_wrapper.txt").rstrip("\n")
assert WRAPPER == "[INST] {input} [/INST]", WRAPPER


def build(protocol, prompt, resp1, resp2=None):
    # Auto-J: protocol_mapping[protocol].format(prompt=prompt, response=resp1, response_another=resp2)
    user_msg = read(protocol + ".txt").format(prompt=prompt, response=resp1, response_another=resp2)
    # Auto-J: llama2_wrapper(user_msg) = PROMPT_INPUT_WO_SYSTEM.format(input=user_msg)
    return WRAPPER.format(input=user_msg)


def main():
    cases = []
    for name, protocols in SETS.items():
        with open(os.path.join(DATA, name + ".jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        braced = [i for i, row in enumerate(rows) if "{" in row["prompt"] + row.get("response", "")
                  + row.get("response 1", "") + row.get("response 2", "")]
        for index in list(range(5)) + braced[:2]:
            row = rows[index]
            # The Chinese pairwise template has no test set of its own: English rows 1 and the braced ones.
            for protocol in protocols if index == 0 or index in braced else protocols[:1]:
                if protocol.endswith("pairwise_tie"):
                    text = build(protocol, row["prompt"], row["response 1"], row["response 2"])
                else:
                    text = build(protocol, row["prompt"], row["response"])
                cases.append({"set": name, "line": index + 1, "protocol": protocol, "input": text})
    for query, response1, response2 in ADVERSARIAL:
        for protocol in ["pairwise_tie", "single", "zh_pairwise_tie", "zh_single"]:
            if protocol.endswith("pairwise_tie"):
                item = {"query": query, "response1": response1, "response2": response2}
                text = build(protocol, query, response1, response2)
            else:
                item = {"query": query, "response": response1}
                text = build(protocol, query, response1)
            cases.append({"item": item, "protocol": protocol, "input": text})
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/reference/render_prompts.py", "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{OUT}: {len(cases)} cases")


if __name__ == "__main__":
    main()

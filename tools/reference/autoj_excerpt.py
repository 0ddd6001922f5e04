#!/usr/bin/env python3
"""The excerpt of Auto-J's files kept in the repository: tests/fixtures/autoj/.

So that the tests pass on a clone with no copy of Auto-J's data beside it, they read the few
rows and files they need from this excerpt, copied verbatim from Auto-J's originals (the
directory holding `data/` and `templates/`, as ../shared/autoj does). Standard library only,
no webjudge code:

    python3 tools/reference/autoj_excerpt.py [AUTOJ_DIR]  # default $WEBJUDGE_AUTOJ_DIR, else ../shared/autoj

It writes
- `rows.jsonl`: one `{"set", "line", "row"}` object per kept row (`line` 1-based in the set's
  file, `row` the original JSON object): every row tests/golden/autoj_rendered.json names
  (run render_prompts.py first) and the SHORTEST_PAIRS shortest pairwise rows (by the bytes of
  prompt and responses), which the judge runs on the test model.
- `rendered_examples.json`: Auto-J's own rendering of its example input, byte for byte.
"""

import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AUTOJ = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("WEBJUDGE_AUTOJ_DIR")
         or os.path.join(ROOT, "..", "shared", "autoj"))
GOLDEN = os.path.join(ROOT, "tests", "golden", "autoj_rendered.json")
OUT = os.path.join(ROOT, "tests", "fixtures", "autoj")
SHORTEST_PAIRS = 3


def read_set(name):
    with open(os.path.join(AUTOJ, "data", name + ".jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pair_length(row):
    return sum(len(row[key].encode("utf-8")) for key in ("prompt", "response 1", "response 2"))


def main():
    with open(GOLDEN, encoding="utf-8") as f:
        wanted = {(case["set"], case["line"]) for case in json.load(f)["cases"] if "set" in case}
    pairs = read_set("testdata_pairwise")
    shortest = sorted(range(len(pairs)), key=lambda i: (pair_length(pairs[i]), i))[:SHORTEST_PAIRS]
    wanted |= {("testdata_pairwise", index + 1) for index in shortest}

    sets = {}
    with open(os.path.join(OUT, "rows.jsonl"), "w", encoding="utf-8") as f:
        for name, line in sorted(wanted):
            rows = sets.setdefault(name, read_set(name))
            f.write(json.dumps({"set": name, "line": line, "row": rows[line - 1]}, ensure_ascii=False) + "\n")
    shutil.copyfile(os.path.join(AUTOJ, "templates", "rendered_examples.json"),
                    os.path.join(OUT, "rendered_examples.json"))
    print(f"{OUT}: {len(wanted)} rows and rendered_examples.json")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Adds the best run of each engine to a peer table of BENCH.md, with its speed as a multiple
of the peer's (tools/bench_peers.sh, tools/bench_browser.sh).

Usage: record_peers.py RESULTS BENCH_MD PEER NOTE [PROFILE]

RESULTS holds one JSON line per run: {"engine": KEY, "result": {adapter, prompt_tokens,
prefill_tok_s, decode_tokens, decode_tok_s[, engine: the name to show]}}, engines
alternating. The rows go after the last row of the table whose header has the column
"prefill vs PEER"; PROFILE's text (markdown) goes at the end of that table's section.
"""
import datetime
import json
import sys

results, bench_md, peer, note = sys.argv[1:5]
runs = [json.loads(line) for line in open(results) if line.strip()]
best = {}
for run in runs:
    r = run["result"]
    b = best.setdefault(run["engine"], dict(r))
    b["prefill_tok_s"] = max(b["prefill_tok_s"], r["prefill_tok_s"])
    b["decode_tok_s"] = max(b["decode_tok_s"], r["decode_tok_s"])
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
rows = []
for engine, r in best.items():
    ratio = lambda key: f"{r[key] / best[peer][key]:.2f}x"
    rows.append(f"| {date} | {r['adapter']} | {r.get('engine', engine)} | {r['prompt_tokens']} | "
                f"{r['prefill_tok_s']:.2f} | {r['decode_tokens']} | {r['decode_tok_s']:.2f} | "
                f"{ratio('prefill_tok_s')} | {ratio('decode_tok_s')} | "
                f"best of {len(runs) // len(best)} alternating runs; {note} |")

lines = open(bench_md).read().splitlines()
header = next(i for i, line in enumerate(lines)
              if line.startswith("| date |") and f"| prefill vs {peer} |" in line)
end = header
while end < len(lines) and lines[end].startswith("|"):
    end += 1
lines[end:end] = rows
if len(sys.argv) > 5:
    section_end = next((i for i in range(end, len(lines)) if lines[i].startswith("## ")), len(lines))
    while section_end > end and not lines[section_end - 1].strip():
        section_end -= 1
    lines[section_end:section_end] = [""] + open(sys.argv[5]).read().rstrip().splitlines()
open(bench_md, "w").write("\n".join(lines) + "\n")
print("\n".join(rows))

#!/usr/bin/env python3
"""Independent reference for webjudge's Auto-J metrics: writes tests/golden/autoj_metrics.json.

Standard library only, and no webjudge code. It re-implements the evaluation of Auto-J's
`codes/leaderboard/pairwise_eval.py` (GAIR-NLP/auto-j, commit 5e280bee) twice:

- `original_eval` follows the original step by step (`exchange_to_ori_label`, `check_res`,
  `register_scenario_wise_results`, `group_wise_collect`, the printed table), asserts included:
  every verdict must be 0, 1 or 2, every row labelled and in a known scenario, every group
  present. It can only score the clean cases.
- `extended_eval` adds what webjudge documents for inputs the original stops on (unparsed
  verdicts are -1, as Auto-J's parser returns them; unlabelled rows; unknown or missing
  scenarios; groups without rows; a mix of swapped and unswapped rows). On the clean cases the
  two must print the same table, which the script checks.

The judged rows are synthetic and deterministic (a fixed LCG), in the original's own encoding:
`label` 0 = response 1 better, 1 = response 2, 2 = tie; `output` the verdict on the given order;
`output_exchange` the raw verdict on the swapped order (not yet mapped back), as the original's
`--exchange_pred_file_path` holds it; -1 = unparsed.

    python3 tools/reference/pairwise_eval.py    # from the repository root
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPS_PATH = os.path.join(ROOT, "..", "shared", "autoj", "scenario_groups.json")
GOLDEN_PATH = os.path.join(ROOT, "tests", "golden", "autoj_metrics.json")
RULE = "-" * 28
UNPARSED = -1


class Lcg:
    """64-bit linear congruential generator (Knuth's MMIX constants): the same rows on any Python."""

    def __init__(self, seed):
        self.state = seed

    def below(self, n):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (self.state >> 33) % n


def exchange_to_ori_label(exchanged):
    assert exchanged in (0, 1, 2)
    return {0: 1, 1: 0, 2: 2}[exchanged]


# ---------------------------------------------------------------- the original, step by step


def original_eval(rows, groups, eval_type):
    """pairwise_eval.py's computation and printout for `rows` (all labelled, all parsed)."""
    reversed_group = {scenario: name for name, scenarios in groups.items() for scenario in scenarios}
    counters = ("correct", "correct_exchange", "correct_both", "total", "exchange_dont_agree")
    per_scenario = {}
    for row in rows:
        gt_label = row["label"]
        pred_label = row["output"]
        pred_exchange = exchange_to_ori_label(row["output_exchange"]) if eval_type == "pairwise" else None
        assert pred_label in (0, 1, 2) and pred_exchange in (0, 1, 2, None)
        tally = per_scenario.setdefault(row["scenario"], dict.fromkeys(counters, 0))
        tally["total"] += 1
        if gt_label == pred_label:
            tally["correct"] += 1
        if pred_exchange is not None:
            if gt_label == pred_exchange:
                tally["correct_exchange"] += 1
            if pred_exchange == pred_label == gt_label:
                tally["correct_both"] += 1
            if pred_exchange != pred_label:
                tally["exchange_dont_agree"] += 1
    per_group = {"Overall": dict.fromkeys(counters, 0)}
    for scenario, tally in per_scenario.items():
        group = reversed_group[scenario]
        per_group.setdefault(group, dict.fromkeys(counters, 0))
        for key in counters:
            per_group[group][key] += tally[key]
            per_group["Overall"][key] += tally[key]
    results = {}
    for name in list(groups) + ["Overall"]:
        tally = per_group[name]
        agreement = round(100 * tally["correct"] / float(tally["total"]), 2)
        agreement_both = round(100 * tally["correct_both"] / float(tally["total"]), 2)
        consistency = round(100 * (1 - tally["exchange_dont_agree"] / float(tally["total"])), 2)
        results[name] = {
            "agreement": agreement if eval_type == "single" else agreement_both,
            "consistency": "-" if eval_type == "single" else consistency,
        }
    lines = ["Group Name\tAgreement\tConsistency", RULE]
    for name, result in results.items():
        if name == "Overall":
            lines.append(RULE)
        lines.append(f"{name}\t{result['agreement']}\t{result['consistency']}")
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------- with webjudge's extensions


def extended_eval(rows, groups):
    reversed_group = {scenario: name for name, scenarios in groups.items() for scenario in scenarios}
    blank = ("total", "correct", "swapped", "dont_agree", "unparsed")
    tallies = {"Overall": dict.fromkeys(blank, 0)}
    unlabelled = ungrouped = 0
    for row in rows:
        gt_label = row["label"]
        if gt_label is None:
            unlabelled += 1
            continue
        pred = row["output"]
        raw = row.get("output_exchange")
        back = None if raw is None else (UNPARSED if raw == UNPARSED else exchange_to_ori_label(raw))
        targets = ["Overall"]
        group = reversed_group.get(row["scenario"]) if row["scenario"] is not None else None
        if group is None:
            ungrouped += 1
        else:
            targets.append(group)
        for target in targets:
            tally = tallies.setdefault(target, dict.fromkeys(blank, 0))
            tally["total"] += 1
            if back is None:
                tally["correct"] += int(pred == gt_label)
                tally["unparsed"] += int(pred == UNPARSED)
            else:
                tally["swapped"] += 1
                tally["correct"] += int(pred == gt_label and back == gt_label)
                tally["dont_agree"] += int(pred == UNPARSED or back == UNPARSED or pred != back)
                tally["unparsed"] += int(pred == UNPARSED or back == UNPARSED)

    def figures(tally):
        consistency = None
        if tally["swapped"]:
            consistency = 100 * (1 - tally["dont_agree"] / float(tally["swapped"]))
        return {
            "rows": tally["total"],
            "agreement": 100 * tally["correct"] / float(tally["total"]),
            "consistency": consistency,
            "unparsed": tally["unparsed"],
            "swapped": tally["swapped"],
        }

    order = [name for name in groups if name in tallies]
    lines = ["Group Name\tAgreement\tConsistency", RULE]
    for name in order + ["Overall"]:
        if name == "Overall":
            lines.append(RULE)
        result = figures(tallies[name])
        consistency = "-" if result["consistency"] is None else round(result["consistency"], 2)
        lines.append(f"{name}\t{round(result['agreement'], 2)}\t{consistency}")
    expected = figures(tallies["Overall"])
    expected.update(
        unlabelled=unlabelled,
        ungrouped=ungrouped,
        group_order=order,
        groups={name: figures(tallies[name]) for name in order},
        table="".join(line + "\n" for line in lines),
    )
    return expected


# ---------------------------------------------------------------- synthetic judged rows


def judged_row(rng, scenario, label, swapped=True):
    """A verdict right about 60% of the time; the swapped verdict consistent about 75%."""
    verdict = label if rng.below(10) < 6 else (label + 1 + rng.below(2)) % 3
    row = {"scenario": scenario, "label": label, "output": verdict}
    if swapped:
        back = verdict if rng.below(4) < 3 else (verdict + 1 + rng.below(2)) % 3
        row["output_exchange"] = exchange_to_ori_label(back)  # what the judge said on the swapped order
    return row


def clean_rows(groups):
    rng = Lcg(20231020)
    rows = []
    for scenarios in groups.values():
        for i in range(8):
            rows.append(judged_row(rng, scenarios[i % len(scenarios)], rng.below(3)))
    return rows


def extended_rows(groups):
    rng = Lcg(42)
    scenarios = [s for name, group in groups.items() if name not in ("Code", "Rewriting") for s in group]
    rows = []
    for i in range(60):
        scenario = scenarios[(7 * i) % len(scenarios)]
        if i % 20 == 3:
            scenario = None
        elif i % 30 == 11:
            scenario = "not_a_scenario"
        row = judged_row(rng, scenario, rng.below(3), swapped=i % 10 != 9)
        if i % 15 == 5:
            row["label"] = None
        if i % 11 == 2:
            row["output"] = UNPARSED
        if i % 13 == 4 and "output_exchange" in row:
            row["output_exchange"] = UNPARSED
        if i in (17, 40):
            row["output"] = UNPARSED
            row["output_exchange"] = UNPARSED
        if i in (21, 33):  # consistent ties, and an inconsistent tie
            row["output"], row["output_exchange"] = 2, (2 if i == 21 else 0)
        rows.append(row)
    return rows


def round_cases():
    """`str(round(100 * k / float(n), 2))` for counts whose percentages are awkward to print:
    exact ties at the third decimal (n = 800), 0 and 100, thirds, the test set's 1,392."""
    cases = []
    for total in (3, 7, 24, 72, 800, 1392):
        for count in range(total + 1):
            value = 100 * count / float(total)
            tie = (value * 1000) % 10 == 5
            if total < 100 or (tie and count % 5 == 1) or count % 97 == 0 or count == total:
                cases.append({"count": count, "total": total, "text": str(round(value, 2))})
    return cases


def main():
    with open(GROUPS_PATH) as f:
        groups = json.load(f)  # dicts keep the file's order
    clean = clean_rows(groups)
    single = [{k: v for k, v in row.items() if k != "output_exchange"} for row in clean]
    cases = []
    for name, rows, eval_type in (
        ("clean_pairwise", clean, "pairwise"),
        ("clean_single", single, "single"),
        ("extended", extended_rows(groups), None),
    ):
        expected = extended_eval(rows, groups)
        if eval_type is not None:
            printed = original_eval(rows, groups, eval_type)
            assert printed == expected["table"], (name, printed, expected["table"])
        cases.append({"name": name, "rows": rows, "expected": expected})
    golden = {
        "generator": "tools/reference/pairwise_eval.py",
        "original": "GAIR-NLP/auto-j codes/leaderboard/pairwise_eval.py",
        "groups": groups,
        "round2": round_cases(),
        "cases": cases,
    }
    with open(GOLDEN_PATH, "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for case in cases:
        print(f"{case['name']}: {len(case['rows'])} rows", file=sys.stderr)
        print(case["expected"]["table"], file=sys.stderr)


if __name__ == "__main__":
    main()

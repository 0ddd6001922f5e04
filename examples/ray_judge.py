#!/usr/bin/env python3
"""Auto-J's pairwise test set judged over Ray Data actors, with the metrics at the end.

    pip install 'webjudge[ray]'
    python examples/ray_judge.py --model autoj-13b --output autoj.jsonl --actors 4 --num-gpus 1

Each actor loads the judge once and judges batches of rows with the batching engine: one actor
per GPU (``--num-gpus 1``), or one per machine on CPU adapters. Records are written to
``--output`` as batches come back; interrupted, the same command resumes where it stopped (rows
already judged are skipped, as ``webjudge judge`` resumes). Without an address, Ray starts a
local cluster of ``--num-cpus`` CPUs; with ``--address`` (or ``RAY_ADDRESS``) the run spreads
over that cluster, whose machines must all see the model at the same path (a URL's download:
the cache folder ``WEBJUDGE_CACHE``).
"""

import argparse
from pathlib import Path

import ray

from webjudge.ray import judge_file

AUTOJ_PAIRWISE = Path(__file__).resolve().parents[1] / "../shared/autoj/data/testdata_pairwise.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", required=True, help="a model directory (webjudge convert's), a GGUF file, or a GGUF file's URL"
    )
    parser.add_argument("--input", default=str(AUTOJ_PAIRWISE), help="test-data JSONL (default: Auto-J's pairwise set)")
    parser.add_argument("--output", required=True, help="the records, one JSON line per row (resumed if it exists)")
    parser.add_argument("--actors", type=int, default=2, help="Ray actors, each with the judge loaded once")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per batch an actor judges together")
    parser.add_argument("--num-gpus", type=float, default=0, help="GPUs per actor (1: one actor per GPU)")
    parser.add_argument("--num-cpus", type=float, default=1, help="CPUs per actor")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="critique tokens at most")
    parser.add_argument("--limit", type=int, help="judge only the first N rows")
    parser.add_argument("--swap", action="store_true", help="judge each pair in both orders too")
    parser.add_argument("--address", help="a Ray cluster to join (default: a local one)")
    parser.add_argument("--cluster-cpus", type=int, help="CPUs of the local cluster (default: all)")
    args = parser.parse_args()

    ray.init(address=args.address, num_cpus=args.cluster_cpus, include_dashboard=False, log_to_driver=False)
    report = judge_file(
        args.input,
        args.output,
        args.model,
        swap=args.swap,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        batch_size=args.batch_size,
        concurrency=args.actors,
        num_gpus=args.num_gpus,
        num_cpus=args.num_cpus,
    )
    print(report, end="")


if __name__ == "__main__":
    main()

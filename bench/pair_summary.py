"""Tock's queue beside PgQueuer's batch of 100, repetition by repetition and in medians: bench/queue-pair.

Beside them, each repetition's two references: Tock's statements alone (pgbench, no worker process) and the peers'
bare SQL loop (100 per claim). Every ratio is to PgQueuer's figure of the same repetition and worker count."""
import glob
import json
import os
import re
import statistics
import sys

# (column, file prefix, section, key): the contestants, PgQueuer last (the ratios' denominator).
CONTESTANTS = [
    ("Tock", "tock", "queue", "runs_per_second"),
    ("Tock's SQL alone", "tock-sql", "queue", "runs_per_second"),
    ("bare SQL loop b100", "baseline-b100", "throughput", "jobs_per_s"),
    ("PgQueuer b100", "pgqueuer-b100", "throughput", "jobs_per_s"),
]


def rates(path, section, key):
    """{workers: runs per second} of one result file: the rows under section, the figure under key."""
    if not os.path.exists(path):
        return {}
    data = json.load(open(path, encoding="utf-8"))
    return {row["workers"]: row[key] for row in data[section]}


def main(folder):
    reps = sorted(int(re.search(r"rep(\d+)", name).group(1)) for name in glob.glob(os.path.join(folder, "tock.rep*.json")))
    others = [name for name, *_ in CONTESTANTS[:-1]]
    print("| repetition | workers | " + " | ".join(name for name, *_ in CONTESTANTS) + " | "
          + " | ".join(f"{name} ÷ PgQueuer" for name in others) + " |")
    print("|---:" * (2 + len(CONTESTANTS) + len(others)) + "|")
    figures, ratios = {}, {}
    for rep in reps:
        found = [rates(os.path.join(folder, f"{prefix}.rep{rep}.json"), section, key)
                 for _, prefix, section, key in CONTESTANTS]
        peer = found[-1]
        for workers in sorted(found[0]):
            row = [f.get(workers) for f in found]
            for name, value in zip((n for n, *_ in CONTESTANTS), row):
                if value is not None:
                    figures.setdefault((name, workers), []).append(value)
            shares = []
            for name, value in zip(others, row):
                if value is None or not peer.get(workers):
                    shares.append("")
                    continue
                ratio = value / peer[workers]
                ratios.setdefault((name, workers), []).append(ratio)
                shares.append(f"{ratio:.2f}×")
            print(f"| {rep} | {workers} | " + " | ".join("" if v is None else f"{v:,.0f}" for v in row) + " | "
                  + " | ".join(shares) + " |")
    print()
    print("| workers | " + " | ".join(f"{name} median" for name, *_ in CONTESTANTS) + " | "
          + " | ".join(f"{name} ÷ PgQueuer, median (min-max)" for name in others) + " |")
    print("|---:" * (1 + len(CONTESTANTS) + len(others)) + "|")
    for workers in sorted({w for _, w in figures}):
        cells = [f"{statistics.median(figures[(name, workers)]):,.0f}" if (name, workers) in figures else ""
                 for name, *_ in CONTESTANTS]
        for name in others:
            r = ratios.get((name, workers))
            cells.append(f"{statistics.median(r):.2f}× ({min(r):.2f}-{max(r):.2f})" if r else "")
        print(f"| {workers} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])

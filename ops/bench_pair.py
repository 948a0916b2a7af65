"""Tock's queue beside PgQueuer's batch of 100, repetition by repetition and in medians: ops/bench-queue-pair."""
import glob
import json
import os
import re
import statistics
import sys


def rates(path, section, key):
    """{workers: runs per second} of one result file: the rows under section, the figure under key."""
    data = json.load(open(path, encoding="utf-8"))
    return {row["workers"]: row[key] for row in data[section]}


def main(folder):
    reps = sorted(int(re.search(r"rep(\d+)", name).group(1)) for name in glob.glob(os.path.join(folder, "tock.rep*.json")))
    print("| repetition | workers | Tock runs/s | PgQueuer b100 jobs/s | Tock ÷ PgQueuer |")
    print("|---:|---:|---:|---:|---:|")
    ratios, tock_all, peer_all = {}, {}, {}
    for rep in reps:
        tock = rates(os.path.join(folder, f"tock.rep{rep}.json"), "queue", "runs_per_second")
        peer = rates(os.path.join(folder, f"pgqueuer-b100.rep{rep}.json"), "throughput", "jobs_per_s")
        for workers in sorted(tock):
            ratio = tock[workers] / peer[workers]
            ratios.setdefault(workers, []).append(ratio)
            tock_all.setdefault(workers, []).append(tock[workers])
            peer_all.setdefault(workers, []).append(peer[workers])
            print(f"| {rep} | {workers} | {tock[workers]:,.0f} | {peer[workers]:,.0f} | {ratio:.2f}× |")
    print()
    print("| workers | Tock median | PgQueuer b100 median | median of the ratios (min-max) |")
    print("|---:|---:|---:|---|")
    for workers in sorted(ratios):
        r = ratios[workers]
        print(f"| {workers} | {statistics.median(tock_all[workers]):,.0f} | {statistics.median(peer_all[workers]):,.0f} | "
              f"{statistics.median(r):.2f}× ({min(r):.2f}-{max(r):.2f}) |")


if __name__ == "__main__":
    main(sys.argv[1])

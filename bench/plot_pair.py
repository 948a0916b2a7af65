"""Draws bench/queue-pair's repetitions as a PNG: runs/s of each contestant per repetition, and Tock's ratio (and
its statements' alone) to PgQueuer's batch of 100 in the same repetition, one row per worker count. Usage: plot_pair.py RESULTS_DIR [OUT.png]
(default RESULTS_DIR/repetitions.png). Reads the same files as pair_summary.py."""
import glob
import os
import re
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pair_summary import CONTESTANTS, rates  # noqa: E402

MARKERS = ["o", "s", "^", "D"]


def main(folder, out):
    reps = sorted(int(re.search(r"rep(\d+)", name).group(1)) for name in glob.glob(os.path.join(folder, "tock.rep*.json")))
    if not reps:
        sys.exit(f"plot_pair.py: no tock.rep*.json in {folder}: run bench/queue-pair first")
    # figures[name][workers] = [(rep, runs/s)]
    figures = {name: {} for name, *_ in CONTESTANTS}
    for rep in reps:
        for name, prefix, section, key in CONTESTANTS:
            for workers, value in rates(os.path.join(folder, f"{prefix}.rep{rep}.json"), section, key).items():
                figures[name].setdefault(workers, []).append((rep, value))
    worker_counts = sorted({w for by_workers in figures.values() for w in by_workers})
    peer = CONTESTANTS[-1][0]

    fig, axes = plt.subplots(len(worker_counts), 2, figsize=(11, 3.6 * len(worker_counts)), squeeze=False)
    for row, workers in enumerate(worker_counts):
        left, right = axes[row]
        for (name, *_), marker in zip(CONTESTANTS, MARKERS):
            points = figures[name].get(workers, [])
            if points:
                left.plot([r for r, _ in points], [v for _, v in points], marker=marker, label=name)
        left.set_title(f"{workers} worker process{'es' if workers > 1 else ''}: runs/s per repetition")
        left.set_xlabel("repetition")
        left.set_ylabel("runs/s")
        left.set_xticks(reps)
        left.set_ylim(bottom=0, top=left.get_ylim()[1] * 1.05)
        left.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        left.grid(alpha=0.3)
        left.legend(fontsize="small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))

        peer_by_rep = dict(figures[peer].get(workers, []))
        highest = 2.0
        # Tock, and Tock's statements alone (no worker process), each to PgQueuer's figure of the same repetition.
        for (name, *_), marker, color in zip(CONTESTANTS[:2], MARKERS, ["C0", "C1"]):
            ratios = [(r, v / peer_by_rep[r]) for r, v in figures[name].get(workers, []) if peer_by_rep.get(r)]
            right.plot([r for r, _ in ratios], [q for _, q in ratios], marker=marker, color=color, label=f"{name} ÷ {peer}")
            highest = max([highest] + [q for _, q in ratios])
        right.axhline(2.0, linestyle="--", color="grey", label="2× (the target)")
        right.axhline(1.0, linestyle=":", color="grey")
        right.set_title(f"{workers} worker process{'es' if workers > 1 else ''}: ratio to {peer}, same repetition")
        right.set_xlabel("repetition")
        right.set_ylabel("ratio")
        right.set_xticks(reps)
        right.set_ylim(bottom=0, top=highest * 1.1)
        right.grid(alpha=0.3)
        right.legend(fontsize="small", ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.suptitle("bench/queue-pair: the contestants take turns on one cluster, order alternating")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else os.path.join(sys.argv[1], "repetitions.png"))

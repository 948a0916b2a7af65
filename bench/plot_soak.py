"""Draws a tock-bench soak (its soak.json) as a PNG: one panel per figure it records, interval by interval, with the
warm-up shaded and the first and last windows the checks compare marked. Usage: plot_soak.py RESULTS_DIR [OUT.png]
(default RESULTS_DIR/soak.png)."""
import json
import os
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

# As tock-bench soak classifies them: these hold definitions and bookkeeping; every other unpartitioned table in
# schema tock is in flight and must stop growing; partitioned ones hold the history.
DEFINITION_TABLES = {"tock.jobs", "tock.workers", "tock.timezones", "tock.migrations", "tock.config"}
# Logs with a retention of their own (a day or more), reported, not judged.
LOG_TABLES = {"tock.audit", "tock.trigger_keys"}
MIB = 1048576
# Relations smaller than this all along are left out of the size panels (a line at zero each), named in a note.
SMALL_MIB = 1.0


def series(intervals, value):
    """(minutes, values) of the intervals where value(interval) is not None."""
    points = [(i["minute"], value(i)) for i in intervals]
    points = [(m, v) for m, v in points if v is not None]
    return [m for m, _ in points], [v for _, v in points]


def relation(interval, name):
    return next((r for r in interval["relations"] if r["name"] == name), None)


def main(folder, out):
    path = os.path.join(folder, "soak.json")
    if not os.path.exists(path):
        sys.exit(f"plot_soak.py: no soak.json in {folder}: run tock-bench soak --out {folder} first")
    with open(path) as f:
        report = json.load(f)
    setup, windows, intervals = report["setup"], report["windows"], report["intervals"]
    if not intervals:
        sys.exit("plot_soak.py: the soak recorded no interval")
    step = setup["interval_seconds"] / 60
    last = intervals[-1]
    tables = {r["name"]: r for r in last["relations"] if "index" not in r["kind"]}

    def history(r):
        return r["kind"] == "partitioned table" or (r["partitions"] > 0 and "index" not in r["kind"])

    def in_flight(r):
        table = tables.get(r.get("table") or r["name"], r)
        return (table["kind"] == "table" and table["partitions"] == 0
                and table["name"] not in DEFINITION_TABLES | LOG_TABLES)

    def log(r):
        return (r.get("table") or r["name"]) in LOG_TABLES

    def largest(name, key, scale=1):
        return max(((relation(i, name) or {}).get(key, 0) / scale for i in intervals), default=0)

    warm = windows["warmup_intervals"]

    def clip_warmup(ax, keys):
        """A y range for what follows the warm-up: a first minute's backlog (the capacity measure's) would flatten
        the rest; says what it left off."""
        after = [i.get(k) for i in intervals[warm:] for k in keys if i.get(k) is not None]
        before = [i.get(k) for i in intervals[:warm] for k in keys if i.get(k) is not None]
        if after and before and max(before) > 1.2 * max(after):
            ax.set_ylim(0, max(after) * 1.25)
            ax.text(0.01, 0.97, f"warm-up up to {max(before):,.0f} ms, off the scale", transform=ax.transAxes,
                    fontsize="x-small", va="top")
        else:
            ax.set_ylim(bottom=0)

    fig, axes = plt.subplots(4, 2, figsize=(13, 15))
    axes = axes.flatten()

    def decorate(ax, title, ylabel):
        ax.axvspan(0, windows["warmup_intervals"] * step, color="0.85", lw=0, label="_warm-up")
        for name, color in (("first", "tab:blue"), ("last", "tab:orange")):
            lo, hi = windows[name]
            ax.axvspan(lo * step, hi * step, color=color, alpha=0.08, lw=0)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("minutes")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, last["minute"])
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="x-small", loc="best")

    ax = axes[0]
    ax.plot(*series(intervals, lambda i: i["runs_per_second"]), label="finished (workers' counters)")
    ax.plot(*series(intervals, lambda i: i["recorded_per_second"]), ls="--", label="recorded in the files")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)  # room above a flat line for the legend
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    decorate(ax, "runs/s", "runs/s")

    ax = axes[1]
    ax.plot(*series(intervals, lambda i: i["queue_waiting"]), color="tab:purple", label="waiting (tock.lag)")
    ax.plot(*series(intervals, lambda i: i.get("queue_running")), color="tab:green", label="held by the workers (running)")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    decorate(ax, "runs at each sample", "runs")

    ax = axes[2]
    for key, label, style in (("to_script_p50_ms", "→ script running p50", "-"), ("to_script_p99_ms", "→ script running p99", "-"),
                              ("to_claimed_p50_ms", "→ claimed p50", ":"), ("to_claimed_p99_ms", "→ claimed p99", ":")):
        ax.plot(*series(intervals, lambda i, k=key: i.get(k)), ls=style, label=label)
    clip_warmup(ax, ["to_script_p50_ms", "to_script_p99_ms", "to_claimed_p50_ms", "to_claimed_p99_ms"])
    decorate(ax, f"run-now every {setup['run_now_ms']} ms", "ms")

    ax = axes[3]
    ax.plot(*series(intervals, lambda i: i.get("lateness_p50_ms")), label="p50")
    ax.plot(*series(intervals, lambda i: i.get("lateness_p99_ms")), label="p99")
    clip_warmup(ax, ["lateness_p50_ms", "lateness_p99_ms"])
    decorate(ax, "schedule lateness (started_at - scheduled_for)", "ms")

    ax = axes[4]
    small = []
    for name, r in sorted(tables.items()):
        if in_flight(r) or history(r) or log(r):
            if largest(name, "bytes", MIB) < SMALL_MIB:
                small.append(name)
                continue
            if history(r):
                label = f"{name} (history, {r['partitions']} partitions)"
            elif log(r):
                label = f"{name} (log)"
            else:
                label = name + (" (in flight)" if setup["history_partitioned"] else " (in flight and history)")
            ax.plot(*series(intervals, lambda i, n=name: (relation(i, n) or {}).get("bytes", 0) / MIB),
                    ls=":" if history(r) else "--" if log(r) else "-", label=label)
    ax.set_ylim(bottom=0)
    if small:
        ax.text(0.01, 0.03, f"{len(small)} more tables, each under {SMALL_MIB:g} MiB throughout", transform=ax.transAxes,
                fontsize="x-small")
    decorate(ax, "tables, with their indexes and TOAST", "MiB")

    ax = axes[5]
    small = 0
    for r in sorted(last["relations"], key=lambda r: -r["bytes"]):
        if "index" in r["kind"] and in_flight(r):
            if largest(r["name"], "bytes", MIB) < SMALL_MIB:
                small += 1
                continue
            ax.plot(*series(intervals, lambda i, n=r["name"]: (relation(i, n) or {}).get("bytes", 0) / MIB), label=r["name"])
    ax.set_ylim(bottom=0)
    if small:
        ax.text(0.01, 0.03, f"{small} more indexes, each under {SMALL_MIB:g} MiB throughout", transform=ax.transAxes,
                fontsize="x-small")
    decorate(ax, "indexes of the in-flight tables", "MiB")

    ax = axes[6]
    for name, r in sorted(tables.items()):
        if (in_flight(r) or history(r) or log(r)) and largest(name, "dead_tuples") >= 1000:
            ax.plot(*series(intervals, lambda i, n=name: (relation(i, n) or {}).get("dead_tuples", 0)),
                    ls=":" if history(r) else "--" if log(r) else "-", label=name)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    decorate(ax, "dead tuples (pg_stat_user_tables; tables that reached 1,000)", "tuples")

    ax = axes[7]
    for p in last["processes"]:
        ax.plot(*series(intervals, lambda i, n=p["name"]: next((q["rss_megabytes"] for q in i["processes"]
                                                                 if q["name"] == n and q["rss_megabytes"] > 0), None)),
                label=f"{p['name']} RSS")
    ax.set_ylim(bottom=0)
    wal = ax.twinx()
    wal.plot(*series(intervals, lambda i: i["wal_bytes"] / MIB / step), color="0.5", ls="--", label="WAL (right)")
    wal.set_ylabel("WAL MiB/min")
    wal.set_ylim(bottom=0)
    handles = ax.get_legend_handles_labels()
    more = wal.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize="x-small", loc="lower right")
    decorate(ax, "memory of each process; WAL written", "MiB")

    failed = [c["name"] for c in report["checks"] if c["enforced"] and not c["passed"]]
    verdict = "passed" if report["passed"] else "\n".join(textwrap.wrap("FAILED: " + ", ".join(failed), 160))
    capacity = setup.get("capacity_runs_per_second")
    fig.suptitle(
        f"tock-bench soak, {setup['minutes']:g} min: {setup['jobs']:,} scheduled jobs, no-op load "
        f"{setup['load_runs_per_second']:,.0f} runs/s" + (f" (half of {capacity:,.0f})" if capacity else "")
        + f", retention {setup['retention']}, {setup['workers']} workers, {setup['schedulers']} schedulers\n"
        f"grey: warm-up; blue and orange: the first and last windows compared (minutes {windows['first_minutes']} "
        f"and {windows['last_minutes']})\n{verdict}", fontsize="medium")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    main(folder, sys.argv[2] if len(sys.argv) > 2 else os.path.join(folder, "soak.png"))

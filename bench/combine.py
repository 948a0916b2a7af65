"""Prints Tock's `tock-bench --json` beside the peers' RESULTS.md (medians), with ratios: bench/peers."""
import json
import re
import sys


def peer_tables(path):
    """{config: {"drain1", "drain2", "p50", "p99"}} from the generated Throughput and Latency sections."""
    peers, section = {}, None
    for line in open(path, encoding="utf-8"):
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] == "configuration" or not re.match(r"^[a-z][a-z0-9-]*$", cells[0]):
            continue
        first = lambda cell: float(cell.split()[0].replace(",", ""))
        entry = peers.setdefault(cells[0], {})
        if section and section.startswith("Throughput"):
            entry["drain1"], entry["drain2"] = first(cells[2]), first(cells[3])
        elif section and section.startswith("Latency"):
            entry.setdefault("p50", first(cells[2]))
            entry.setdefault("p99", first(cells[4]))
    return peers


def main(results, tock_json):
    peers = peer_tables(results)
    tock = json.load(open(tock_json, encoding="utf-8"))
    queue = {r["workers"]: r["runs_per_second"] for r in tock.get("queue") or []}
    latency = tock.get("latency") or {}
    claimed = latency.get("to_claimed", {})
    running = latency.get("to_script_running", {})
    print("| system | queue runs/s, 1 process | 2 processes | enqueue → start p50 / p99 ms |")
    print("|---|---:|---:|---|")
    print(f"| **Tock** (no-op runs; latency to claimed) | {queue.get(1, 0):,.0f} | {queue.get(2, 0):,.0f} | "
          f"{claimed.get('p50_ms', float('nan')):.2f} / {claimed.get('p99_ms', float('nan')):.2f} |")
    print(f"| **Tock** run-now → script process running | | | "
          f"{running.get('p50_ms', float('nan')):.2f} / {running.get('p99_ms', float('nan')):.2f} |")
    http = latency.get("to_script_running_over_http")
    if http:
        print(f"| **Tock** API `POST /jobs/{{job}}/trigger` → script process running | | | "
              f"{http.get('p50_ms', float('nan')):.2f} / {http.get('p99_ms', float('nan')):.2f} |")
    for name, p in peers.items():
        print(f"| {name} | {p.get('drain1', 0):,.0f} | {p.get('drain2', 0):,.0f} | "
              f"{p.get('p50', float('nan')):.2f} / {p.get('p99', float('nan')):.2f} |")
    print()
    print("| Tock ÷ peer | queue, 1 process | 2 processes | claimed p50 (lower is better) |")
    print("|---|---:|---:|---:|")
    for name, p in peers.items():
        ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "-"
        print(f"| {name} | {ratio(queue.get(1), p.get('drain1'))} | {ratio(queue.get(2), p.get('drain2'))} | "
              f"{ratio(claimed.get('p50_ms'), p.get('p50'))} |")


    throughput = tock.get("throughput")
    if throughput:
        raw = {r["workers"]: r["runs_per_second"] for r in throughput["raw_spawn"]}
        print()
        print("| scripts (`/bin/true`) | runs/s | plain spawn loop | of raw |")
        print("|---|---:|---:|---:|")
        for rate in throughput["tock"]:
            base = raw.get(rate["workers"])
            share = f"{rate['runs_per_second'] / base * 100:.0f}%" if base else "-"
            print(f"| Tock, {rate['workers']} worker(s) | {rate['runs_per_second']:,.0f} | {base or 0:,.0f} | {share} |")
    schedule = tock.get("schedule")
    if schedule:
        print()
        print(f"Schedule lateness ({schedule['count']} runs due at the same second): p50 {schedule['p50_ms']:.2f} ms, "
              f"p99 {schedule['p99_ms']:.2f} ms, max {schedule['max_ms']:.2f} ms.")
    for process in tock.get("idle") or []:
        print(f"Idle {process['process']}: {process['transactions']} queries in {process['seconds']} s "
              f"(expected: {process['expected']}), {process['rss_megabytes']:.1f} MiB RSS.")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

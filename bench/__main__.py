"""Run every benchmark row, print the table and write bench/results.json.

Each row measures the product and a bare baseline side by side in this one run, on this
machine, and reports their ratio (product ÷ baseline): absolute figures drift between runs
on shared machines, ratios hold.
"""

import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.rows import (
    access_costs,
    compose_startup,
    headroom,
    round_trip,
    scale,
    task_throughput,
    web,
)
from bench.stack import BenchStack

RESULTS = Path(__file__).parent / "results.json"


def ratio_text(row: dict) -> str:
    """`0.91 ± 0.02` for paired rows (flagged when the round limit ended them), else `0.91`."""
    if row.get("ratio") is None:
        return "–"
    if "half_width" not in row:
        return f"{row['ratio']:.2f}"
    text = f"{row['ratio']:.2f} ± {row['half_width']:.2f}"
    return text if row["converged"] else f"{text} ({row['rounds']} rounds, limit)"


def print_table(rows: list[dict]) -> None:
    """Print the rows as a Markdown table (the README's Performance section uses it).

    `ratio` is CPU per unit (baseline ÷ product) for paired rows, product ÷ baseline for the
    others; `throughput` is product ÷ baseline units per second in the same rounds.
    """
    print("| benchmark | product | baseline | ratio | throughput | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        throughput = f"{row['throughput_ratio']:.2f}" if "throughput_ratio" in row else "–"
        print(
            f"| {row['name']} | {row['product']} | {row.get('baseline', '–')} "
            f"| {ratio_text(row)} | {throughput} | {row.get('target', '–')} |"
        )


GROUPS = (task_throughput, round_trip, web, access_costs, scale, headroom, compose_startup)


def main() -> None:
    """Run the row groups named on the command line (default: all), or `profile`."""
    if sys.argv[1:] == ["profile"]:
        from bench.profile import profile

        return profile()
    wanted = set(sys.argv[1:])
    unknown = wanted - {group.__name__ for group in GROUPS}
    if unknown:
        names = ", ".join(group.__name__ for group in GROUPS)
        raise SystemExit(f"unknown benchmark group(s) {sorted(unknown)}; choose from: {names}")
    started = time.monotonic()
    rows: list[dict] = []
    with BenchStack() as stack:
        for measure in GROUPS:
            if wanted and measure.__name__ not in wanted:
                continue
            print(f"... {measure.__name__}", flush=True)
            rows += measure(stack)
    print()
    print_table(rows)
    elapsed = time.monotonic() - started
    print(f"\n{len(rows)} rows in {elapsed:.0f} s on {os.cpu_count()} cores")
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                "seconds": round(elapsed),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()

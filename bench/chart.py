"""Draw the ratios in bench/results.json as a horizontal bar chart: docs/performance.svg."""

# Usage: python3 bench/chart.py [RESULTS_JSON [SVG]]. Standard library only, so that
# `scripts/bench chart` needs no venv, no services and no wrk.

import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results.json"
CHART = REPO_ROOT / "docs" / "performance.svg"

WIDTH = 960
MARGIN = 24
CHAR_WIDTH = 6.6  # average width of a 12 px character, to keep labels clear of marks
LABEL_SPACE = 190  # right of the plot: the ratio labels of the longest bars
ROW_HEIGHT = 38  # a row: its name on one line, its bar below
BAR_HEIGHT = 14
HEADER_HEIGHT = 64
FOOTER_HEIGHT = 110
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
# The page's palette (project/pages/static/app.css), so docs and page look alike.
INK, MUTED, GRID = "#1d2330", "#5b6475", "#d9dde5"
MEETS, MISSES, NO_TARGET = "#1b7a3a", "#b3261e", "#8a94a6"
CPU_NOTE = (
    "CPU rows (tasks, web): baseline CPU ÷ product CPU per task or request, higher is better "
    "(1.0 costs the same)."
)
LATENCY_NOTE = (
    "Latency rows: product ÷ baseline; scale rows: the large database ÷ the small one; "
    "lower is better."
)
LIMIT_NOTE = "(limit): the rounds ran out before the 95 % interval was within ±0.03."
TARGET = re.compile(r"^\s*([≥≤])\s*([0-9]+(?:\.[0-9]+)?)\s*$")


def parse_target(text: str | None) -> tuple[str, float] | None:
    """`≥ 0.85` as ('≥', 0.85); None for `for comparison`, `–` or no target."""
    match = TARGET.match(text or "")
    return (match.group(1), float(match.group(2))) if match else None


def half_width(row: dict) -> float | None:
    """The row's ± half-width when it has a finite one (one round gives infinity)."""
    value = row.get("half_width")
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def ratio_label(row: dict) -> str:
    """`0.57 ± 0.05 (limit)` for paired rows, `1.85` for the others."""
    text = f"{row['ratio']:.2f}"
    spread = half_width(row)
    if spread is not None:
        text += f" ± {spread:.2f}"
    if row.get("converged") is False:
        text += " (limit)"
    return text


def target_label(text: str | None, target: tuple[str, float] | None) -> str:
    """`target ≥ 0.85`, the row's own words (`for comparison`), or `no target`."""
    if target:
        return f"target {text}"
    return text if text and text.strip() not in ("", "–", "-") else "no target"


def bar_colour(ratio: float, target: tuple[str, float] | None) -> str:
    """Green when the ratio meets its target, red when it misses, grey without one."""
    if target is None:
        return NO_TARGET
    sign, value = target
    return MEETS if (ratio >= value if sign == "≥" else ratio <= value) else MISSES


def axis_end(rows: list[dict]) -> float:
    """The axis' right end: past every ratio, interval and target, rounded up to 0.5."""
    ends = [1.0]
    for row in rows:
        ends.append(row["ratio"] + (half_width(row) or 0.0))
        target = parse_target(row.get("target"))
        if target:
            ends.append(target[1])
    return math.ceil(max(ends) * 2 + 0.1) / 2


def text(
    x: float,
    y: float,
    content: str,
    size: int = 12,
    fill: str = INK,
    anchor: str = "start",
    weight: str = "normal",
) -> str:
    """An SVG text element, its content escaped, with a white halo over grid lines."""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" fill="{fill}" '
        f'text-anchor="{anchor}" font-weight="{weight}" stroke="#ffffff" stroke-width="3" '
        f'paint-order="stroke">{escape(content)}</text>'
    )


def line(x1: float, y1: float, x2: float, y2: float, colour: str, width: float = 1) -> str:
    """An SVG line."""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{colour}" stroke-width="{width}"/>'
    )


def subtitle(source: str, results: dict, count: int) -> str:
    """What the chart was drawn from: file, rows, and the machine and time when recorded."""
    machine = results.get("machine") or {}
    parts = [f"{count} rows with a ratio"]
    if machine.get("cores"):
        parts.append(f"{machine['cores']} cores")
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if results.get("seconds"):
        parts.append(f"{results['seconds']} s")
    return f"{source}: " + ", ".join(parts)


def has_ratio(row: dict) -> bool:
    """Whether a row compares product and baseline (headroom and Compose rows do not)."""
    ratio = row.get("ratio")
    return isinstance(ratio, int | float) and math.isfinite(ratio)


def render(results: dict, source: str) -> str:
    """The whole SVG document for one results file (`source` names it in the subtitle)."""
    rows = [row for row in results.get("rows", []) if has_ratio(row)]
    end = axis_end(rows)
    left, right = MARGIN, WIDTH - MARGIN - LABEL_SPACE
    plot_top = HEADER_HEIGHT
    plot_bottom = plot_top + ROW_HEIGHT * len(rows)
    height = plot_bottom + FOOTER_HEIGHT

    def x_of(value: float) -> float:
        """The x coordinate of a ratio, clamped to the axis."""
        return left + (right - left) * min(max(value, 0.0), end) / end

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" role="img" '
        'aria-labelledby="title">',
        '<title id="title">Benchmark ratios, product vs baseline</title>',
        # Opaque: the chart stays readable on a dark page.
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        text(left, 26, "Product vs baseline: the ratio of each benchmark row", 16, weight="600"),
        text(left, 46, subtitle(source, results, len(rows)), 12, fill=MUTED),
    ]

    # Grid every 0.5 (0.25 on a short axis); 1.0, where both sides cost the same, darker.
    step = 0.25 if end <= 1.5 else 0.5
    for index in range(int(round(end / step)) + 1):
        value = index * step
        colour, width = (MUTED, 1.5) if value == 1.0 else (GRID, 1.0)
        out.append(line(x_of(value), plot_top, x_of(value), plot_bottom, colour, width))
        label = f"{value:g}"
        out.append(text(x_of(value), plot_bottom + 16, label, 11, fill=MUTED, anchor="middle"))

    for number, row in enumerate(rows):
        top = plot_top + number * ROW_HEIGHT
        target = parse_target(row.get("target"))
        bar_top = top + 18
        middle = bar_top + BAR_HEIGHT / 2
        out.append(text(left, top + 13, row["name"], 12))
        target_text = target_label(row.get("target"), target)
        out.append(text(right, top + 13, target_text, 11, fill=MUTED, anchor="end"))
        out.append(
            f'<rect x="{left:.1f}" y="{bar_top:.1f}" width="{x_of(row["ratio"]) - left:.1f}" '
            f'height="{BAR_HEIGHT}" fill="{bar_colour(row["ratio"], target)}" opacity="0.85"/>'
        )
        label_x = x_of(row["ratio"])
        spread = half_width(row)
        if spread is not None:  # the 95 % interval as a whisker
            low, high = x_of(row["ratio"] - spread), x_of(row["ratio"] + spread)
            out.append(line(low, middle, high, middle, INK))
            out.append(line(low, middle - 4, low, middle + 4, INK))
            out.append(line(high, middle - 4, high, middle + 4, INK))
            label_x = max(label_x, high)
        label = ratio_label(row)
        if target:
            mark = x_of(target[1])
            out.append(line(mark, top + 15, mark, bar_top + BAR_HEIGHT + 3, INK, 2.5))
            if label_x - 2 <= mark <= label_x + 6 + CHAR_WIDTH * len(label):
                label_x = mark  # the label would cross the target's mark: start after it
        out.append(text(label_x + 6, middle + 4, label, 12))

    notes = plot_bottom + 38
    legend = [(MEETS, "meets its target"), (MISSES, "misses it"), (NO_TARGET, "for comparison")]
    x = left
    for colour, meaning in legend:
        out.append(f'<rect x="{x:.1f}" y="{notes - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(text(x + 18, notes, meaning, 12))
        x += 30 + 7 * len(meaning)
    out.append(line(x, notes - 11, x, notes + 3, INK, 2.5))
    out.append(text(x + 8, notes, "the target; whiskers: 95 % interval", 12))
    for offset, note in ((22, CPU_NOTE), (40, LATENCY_NOTE), (58, LIMIT_NOTE)):
        out.append(text(left, notes + offset, note, fill=MUTED))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    """Read the results (default bench/results.json), write the chart (docs/performance.svg)."""
    source = Path(argv[0]) if argv else RESULTS
    target = Path(argv[1]) if len(argv) > 1 else CHART
    if not source.is_file():
        raise SystemExit(f"error: {source} does not exist; run scripts/bench first")
    resolved = source.resolve()
    name = (
        str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else source.name
    )
    target.write_text(render(json.loads(source.read_text()), name), encoding="utf-8")
    print(f"chart written to {target}")


if __name__ == "__main__":
    main(sys.argv[1:])

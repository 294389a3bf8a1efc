"""Paired rounds: product and baseline measured at once until their CPU ratio holds still.

Throughput on a shared machine moves with the neighbours; the CPU time a server spends per
request moves far less. Each round loads both sides at the same time, so whatever the
machine does during the round (a neighbour's burst, steal, a cold cache) hits both alike;
the round's ratio is baseline CPU per unit ÷ product CPU per unit (1.0: the product costs
what the baseline does; 0.5: twice as much), and rounds go on until the mean ratio's 95 %
confidence interval is within ±TARGET_HALF_WIDTH or the round limit is reached.

Measured on GET /users/<id> and /healthz over 10 rounds each: sides taken in turn (2 s each)
gave round ratios with a standard deviation of 0.15 and 0.26; both at once (4 s) 0.03.
"""

import contextvars
import math
import os
import statistics
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import child_pids

TARGET_HALF_WIDTH = 0.03
MIN_ROUNDS = 4  # an interval from fewer rounds is too unsure to stop on
MAX_ROUNDS = 10  # a row stops earlier once its CPU ratio is known to ±TARGET_HALF_WIDTH
# Rows shown for comparison (no target) stop sooner: on a noisy machine every row ran to
# the limit, and the bench took 706 s where it must stay under 600.
COMPARISON_MAX_ROUNDS = 6
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Student's t, 0.975 quantile, by degrees of freedom (no SciPy needed for a table this small).
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
         10: 2.23, 11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11,
         18: 2.10, 19: 2.09, 20: 2.09}  # fmt: skip


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime, and cutime, cstime: the time of children that exited and were reaped, so
    # a pool process replaced mid-round (Celery's max tasks per child) keeps its CPU counted.
    own = sum(int(fields[index]) for index in (11, 12, 13, 14)) / CLOCK_TICKS
    return own + sum(tree_cpu_seconds(child) for child in child_pids(pid))


@dataclass
class Sample:
    """One side of one round: units done (requests, tasks), CPU and wall seconds spent."""

    units: int
    cpu_seconds: float
    wall_seconds: float
    extra: dict = field(default_factory=dict)


@dataclass
class Paired:
    """Every round of a product-vs-baseline comparison, and what they add up to."""

    product: list[Sample] = field(default_factory=list)
    baseline: list[Sample] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [
            (b.cpu_seconds / b.units) / (p.cpu_seconds / p.units)
            for p, b in zip(self.product, self.baseline, strict=True)
        ]

    @property
    def ratio(self) -> float:
        return statistics.mean(self.ratios)

    @property
    def half_width(self) -> float:
        """Half the width of the mean ratio's 95 % confidence interval."""
        ratios = self.ratios
        if len(ratios) < 2:
            return math.inf
        t = T_975.get(len(ratios) - 1, 1.96)
        return t * statistics.stdev(ratios) / math.sqrt(len(ratios))

    def cpu_per_unit_us(self, side: str) -> float:
        samples = getattr(self, side)
        return sum(s.cpu_seconds for s in samples) / sum(s.units for s in samples) * 1e6

    def per_second(self, side: str) -> float:
        """Units per second over every round of one side."""
        samples = getattr(self, side)
        return sum(s.units for s in samples) / sum(s.wall_seconds for s in samples)


def paired_rounds(
    product: Callable[[], Sample], baseline: Callable[[], Sample], max_rounds: int = MAX_ROUNDS
) -> Paired:
    """Measure product and baseline at once, round after round, until the ratio is known to ±0.03.

    Each side runs in a thread of its own, in a copy of the caller's context (an app context
    or `recorded_by_caller()` holds there as in the caller).
    """
    paired = Paired()
    with ThreadPoolExecutor(max_workers=2) as sides:
        for number in range(max_rounds):
            product_round = sides.submit(contextvars.copy_context().run, product)
            baseline_round = sides.submit(contextvars.copy_context().run, baseline)
            paired.product.append(product_round.result())
            paired.baseline.append(baseline_round.result())
            if number + 1 >= MIN_ROUNDS and paired.half_width <= TARGET_HALF_WIDTH:
                break
    return paired

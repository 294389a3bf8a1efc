"""Measuring: wrk runs, latency percentiles, external benchmark tools."""

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_DIR = Path(__file__).parent / "wrk"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class WrkResult:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * UNITS[unit]


def wrk(
    url: str,
    seconds: int,
    connections: int,
    script: str | None = None,
    headers: tuple[str, ...] = (),
) -> WrkResult:
    """Run wrk against `url` (2 threads, 1 for 1 connection); return rates, p50, p99, errors."""
    threads = min(2, connections)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", str(WRK_DIR / script)]
    for header in headers:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return WrkResult(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        errors=errors,
    )


def percentile(samples: list[float], fraction: float) -> float:
    """Return the `fraction` quantile (0.5, 0.99) of the samples."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def redis_benchmark(port: int, db: int) -> float:
    """Return Redis GET requests per second from redis-benchmark (16 clients)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "--dbnum", str(db), "-t", "get", "-n", "100000",
         "-c", "16", "-q"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r"GET: ([\d.]+) requests per second", out).group(1))


def pgbench_select_only(bindir: Path, url: str, seconds: int) -> float:
    """Return pgbench -S transactions per second (8 clients) on an initialised database."""
    subprocess.run([str(bindir / "pgbench"), "-i", "-q", "-s", "5", url], check=True,
                   capture_output=True)  # fmt: skip
    out = subprocess.run(
        [str(bindir / "pgbench"), "-S", "-c", "8", "-j", "2", "-T", str(seconds), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r"tps = ([\d.]+)", out).group(1))

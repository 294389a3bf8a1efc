"""`scripts/bench profile`: where the product's time goes, per endpoint, under load.

py-spy samples gunicorn's master and workers while wrk loads one endpoint; each endpoint
gets a flame graph (bench/profiles/<endpoint>.svg) and, from a second window of collapsed
stacks, a list of the functions holding the most samples (bench/profiles/top.md).
"""

import re
import subprocess
import threading
from collections import Counter
from pathlib import Path

from bench.measure import wrk
from bench.rows import ENDPOINTS, WRK_CONNECTIONS, seed_users
from bench.stack import BenchStack
from harness.processes import BIN

PROFILES = Path(__file__).parent / "profiles"
SECONDS = 8
RATE = 250  # samples per second and process
TOP = 12
# Frames of the server loop itself, which hold samples while it waits for a request.
IDLE = re.compile(r"\b(wait|select|poll|accept|_recv_into|recv_into|sleep|run_for_one)\b")


def record(pid: int, output: Path, seconds: int, fmt: str) -> subprocess.Popen:
    """Start py-spy on a process and its children; it stops by itself after `seconds`."""
    return subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
         "--rate", str(RATE), "--duration", str(seconds), "--format", fmt,
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def under_load(
    pid: int, url: str, script: str | None, headers: tuple[str, ...], output: Path, fmt: str
) -> None:
    """Record `pid` while wrk loads `url` for the whole window."""
    profiler = record(pid, output, SECONDS, fmt)
    load = threading.Thread(target=wrk, args=(url, SECONDS + 1, WRK_CONNECTIONS, script, headers))
    load.start()
    _, errors = profiler.communicate(timeout=SECONDS + 60)
    load.join()
    if profiler.returncode != 0:
        raise SystemExit(f"py-spy failed: {errors.strip()}")


def top_functions(collapsed: Path) -> list[tuple[str, float]]:
    """The functions with the largest share of busy samples (inclusive), from collapsed stacks."""
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in filter(None, collapsed.read_text().split("\n")):  # frames may hold \x1c
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a frame name that spans lines (py-spy prints it as is)
            continue
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames or IDLE.search(frames[-1]):
            continue
        busy += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    return [(frame, count / busy) for frame, count in inclusive.most_common(TOP * 4)]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def profile() -> None:
    """Profile every endpoint of the web rows; write the flame graphs and the top costs."""
    PROFILES.mkdir(exist_ok=True)
    summary = ["# Where the product's time goes, per endpoint", ""]
    with BenchStack() as stack:
        seed_users(stack)
        server, url = stack.gunicorn()
        seen = set()
        for name, path, script, _, _ in ENDPOINTS:
            if path in seen:
                continue
            seen.add(path)
            svg = PROFILES / f"{slug(name)}.svg"
            print(f"... {name}: {svg.relative_to(PROFILES.parent.parent)}", flush=True)
            under_load(server.pid, url + path, script, stack.auth_headers, svg, "flamegraph")
            collapsed = PROFILES / f"{slug(name)}.txt"
            under_load(server.pid, url + path, script, stack.auth_headers, collapsed, "raw")
            summary += [f"## {name}", "", "| share of busy samples | function |", "| --- | --- |"]
            # Skip the frames every request passes through whole (gunicorn's loop, WSGI).
            shown = [(f, s) for f, s in top_functions(collapsed) if s < 0.97][:TOP]
            summary += [f"| {share:.0%} | `{frame}` |" for frame, share in shown] + [""]
    (PROFILES / "top.md").write_text("\n".join(summary))
    print("\n".join(summary))

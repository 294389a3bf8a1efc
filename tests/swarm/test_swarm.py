"""The stack on a real three-node Docker Swarm (deploy/swarm/, scripts/deploy-swarm).

One manager (this machine's engine) and two node containers with their own engines; the
tests drive the stack through the published port of the proxy, as a client would.
"""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import wait_for
from tests.e2e.stack import docker_engine_answers
from tests.support import (
    BackgroundLoad,
    account,
    http,
    report,
    skip_or_fail,
    submit_divisions,
)
from tests.swarm.cluster import ServiceLog, Swarm, docker

DIVIDE_DONE = r"Task project\.users\.tasks\.divide\[([0-9a-f-]+)\] succeeded"
DIVIDE_RECEIVED = r"Task project\.users\.tasks\.divide\[([0-9a-f-]+)\] received"


@pytest.fixture(scope="module")
def swarm(request: pytest.FixtureRequest) -> Iterator[Swarm]:
    if not docker_engine_answers():
        skip_or_fail("no Docker engine answers: install and start one (.ci/setup-machine does)")
    swarm = Swarm()
    started = time.monotonic()
    try:
        swarm.start()
        elapsed = time.monotonic() - started
        report(request, f"swarm: 3 nodes up and the stack deployed in {elapsed:.0f}s")
        yield swarm
    except AssertionError:
        for service in ("migrate", "web", "worker"):
            print(docker("service", "ps", "--no-trunc", swarm.service(service), check=False).stdout)
        raise
    finally:
        swarm.remove()


def test_tasks_run_on_workers_on_several_nodes(
    swarm: Swarm, request: pytest.FixtureRequest
) -> None:
    worker_log = ServiceLog(swarm.service("worker"))
    expected = submit_divisions(swarm.base_url, 18, swarm.token)
    tally = account(swarm.base_url, expected, [worker_log], time.monotonic(), 120, swarm.token)
    assert (tally.succeeded, tally.lost, tally.duplicates) == (18, 0, 0), tally
    nodes = wait_for(
        lambda: (
            (found := worker_log.nodes_by_task(DIVIDE_DONE)).keys() >= expected.keys()
            and set().union(*(found[task] for task in expected))
        ),
        30,
        "every task's log line",
    )
    report(request, f"swarm: 18 tasks through the proxy ran on nodes_used={len(nodes)}")
    assert len(nodes) >= 2, nodes


def test_deploying_again_changes_nothing(swarm: Swarm) -> None:
    web = swarm.service("web")
    before = swarm.running_tasks(web)
    result = swarm.deploy()
    assert (
        "created secret" not in result.stdout
        and "starting a single-node swarm" not in result.stdout
    )
    assert sorted(swarm.running_tasks(web)) == sorted(before)


def test_metrics_queue_depth_follows_a_burst_while_workers_are_stopped(
    swarm: Swarm, request: pytest.FixtureRequest
) -> None:
    worker = swarm.service("worker")
    swarm.scale(worker, 0)
    try:
        expected = submit_divisions(swarm.base_url, 25, swarm.token)
        time.sleep(1)
        families = {
            family.name: family for family in text_string_to_metric_families(read_metrics(swarm))
        }
        waiting = {s.labels["queue"]: s.value for s in families["celery_queue_length"].samples}
        oldest = families["celery_queue_oldest_task_age_seconds"].samples[0].value
        report(
            request,
            f"swarm: /metrics, workers scaled to 0, 25 tasks queued: celery_queue_length="
            f"{waiting}, oldest task {oldest:.1f}s",
        )
        assert waiting == {"celery": 25}
        assert oldest >= 1
    finally:
        swarm.scale(worker, 3)
    tally = account(swarm.base_url, expected, [], time.monotonic(), 120, swarm.token)
    assert (tally.succeeded, tally.lost) == (25, 0), tally


def read_metrics(swarm: Swarm) -> str:
    """The text of /metrics, read through the proxy with the token."""
    request = urllib.request.Request(
        f"{swarm.base_url}/metrics", headers={"Authorization": f"Bearer {swarm.token}"}
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.read().decode()


class Load(BackgroundLoad):
    """A constant loop of GET /users/<id> and POST /tasks/divide, counting every failure."""

    def __init__(self, swarm: Swarm, user_id: int) -> None:
        super().__init__()
        self.swarm, self.user_id = swarm, user_id
        self.requests = 0
        self.failures: list[str] = []
        self.tasks: dict[str, float] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._reads), threading.Thread(target=self._writes)]

    def _count(self, status: int | None, what: str, error: str = "") -> None:
        with self.lock:
            self.requests += 1
            if status is None or status >= 300:
                self.failures.append(f"{what}: {status} {error}")

    def _reads(self) -> None:
        while not self.stopping.is_set():
            try:
                status, _, _ = http(
                    "GET", f"{self.swarm.base_url}/users/{self.user_id}", token=self.swarm.token
                )
                self._count(status, "GET /users")
            except OSError as error:
                self._count(None, "GET /users", repr(error))
            time.sleep(0.02)

    def _writes(self) -> None:
        i = 0
        while not self.stopping.is_set():
            i += 1
            try:
                status, _, body = post_division(self.swarm, i)
                self._count(status, "POST /tasks/divide")
                if status == 202:
                    self.tasks[body["id"]] = i / 4
            except OSError as error:
                self._count(None, "POST /tasks/divide", repr(error))
            time.sleep(0.4)


def post_division(swarm: Swarm, i: int) -> tuple[int, str, dict | None]:
    """POST divide(i, 4) with an Idempotency-Key, so a retried request queues it once."""
    request = urllib.request.Request(
        f"{swarm.base_url}/tasks/divide",
        json.dumps({"x": i, "y": 4}).encode(),
        {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {swarm.token}",
            "Idempotency-Key": str(uuid.uuid4()),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, "", json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, "", None


def test_rolling_update_of_web_under_load_fails_no_request(
    swarm: Swarm, request: pytest.FixtureRequest
) -> None:
    status, _, user = http(
        "POST", f"{swarm.base_url}/users/", {"username": "rolling", "email": "r@example.com"},
        swarm.token,
    )  # fmt: skip
    assert status == 201, user
    rebuilt = f"{swarm.image}-rebuilt"
    dockerfile = f"FROM {swarm.image}\nLABEL rebuilt={rebuilt}\n"
    docker("build", "-q", "-t", rebuilt, "-", stdin=dockerfile)
    swarm.images.append(rebuilt)
    swarm.load_images(rebuilt)
    web = swarm.service("web")
    with Load(swarm, user["id"]) as load:
        time.sleep(3)
        docker(
            "service", "update", "--detach=false", "--no-resolve-image", "--image", rebuilt, web,
            timeout=600,
        )  # fmt: skip
        time.sleep(3)
    images = docker("service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", web)
    assert images.stdout.strip() == rebuilt
    tally = account(swarm.base_url, load.tasks, [], time.monotonic(), 180, swarm.token)
    report(
        request,
        f"swarm: rolling update: requests={load.requests} failed={len(load.failures)} "
        f"tasks={tally.submitted} lost={tally.lost}",
    )
    assert load.failures == []
    assert load.requests > 100 and tally.submitted > 10
    assert (tally.succeeded, tally.lost) == (tally.submitted, 0), tally


def test_draining_a_node_with_tasks_in_flight_loses_none(
    swarm: Swarm, request: pytest.FixtureRequest
) -> None:
    worker = swarm.service("worker")
    node = next(node for node, _ in swarm.running_tasks(worker) if node != swarm.manager)
    worker_log = ServiceLog(worker)
    expected = submit_divisions(swarm.base_url, 30, swarm.token)
    # Drain once the node's worker has received some of them.
    wait_for(
        lambda: any(
            node in nodes
            for task, nodes in worker_log.nodes_by_task(DIVIDE_RECEIVED).items()
            if task in expected
        ),
        60,
        f"{node}'s worker to receive a task",
        interval=0.3,
    )
    docker("node", "update", "--availability", "drain", node)
    try:
        tally = account(swarm.base_url, expected, [worker_log], time.monotonic(), 180, swarm.token)
        on_node = [t for t, nodes in worker_log.nodes_by_task(DIVIDE_DONE).items() if node in nodes]
    finally:
        docker("node", "update", "--availability", "active", node)
    report(request, "swarm: " + tally.line("drain").replace(" failed=0", ""))
    assert (tally.succeeded, tally.lost, tally.duplicates) == (30, 0, 0), tally
    assert on_node, f"no task finished on {node} before it drained"
    wait_for(lambda: len(swarm.running_tasks(worker)) == 3, 120, "3 workers again")


def task_throughput(swarm: Swarm, count: int) -> float:
    """Tasks a second from the first start to the last finish, read from the task records.

    The workers stop consuming while the tasks are queued, then all start at once, so
    neither the submitting nor a worker's start-up is in the figure.
    """
    web = swarm.service("web")
    control = ["celery", "-A", "app.celery", "control", "--timeout", "5"]
    swarm.exec_in(web, *control, "cancel_consumer", "celery")
    expected = submit_divisions(swarm.base_url, count, swarm.token)
    swarm.exec_in(web, *control, "add_consumer", "celery")
    tally = account(swarm.base_url, expected, [], time.monotonic(), 300, swarm.token)
    assert (tally.succeeded, tally.lost) == (count, 0), tally
    records = [
        http("GET", f"{swarm.base_url}/tasks/{task}", token=swarm.token)[2] for task in expected
    ]
    started = min(datetime.fromisoformat(r["started_at"]) for r in records)
    finished = max(datetime.fromisoformat(r["finished_at"]) for r in records)
    return count / (finished - started).total_seconds()


def test_scale_out_task_throughput(swarm: Swarm, request: pytest.FixtureRequest) -> None:
    worker = swarm.service("worker")
    figures: dict[tuple[str, int], float] = {}
    # Work that waits (0.2 s of sleep, like a call to another service), then no work at all:
    # a task then costs only the stack's own CPU time (broker, task records).
    for delay, count, order in (("0.2", 160, (1, 4)), ("0", 400, (4, 1))):
        docker(
            "service", "update", "--detach=false", "--env-add", f"DIVIDE_DELAY_SECONDS={delay}",
            worker, timeout=300,
        )  # fmt: skip
        for replicas in order:
            swarm.scale(worker, replicas)
            figures[delay, replicas] = task_throughput(swarm, count)
    for delay, kind in (("0.2", "waiting 0.2 s"), ("0", "no work")):
        one, four = figures[delay, 1], figures[delay, 4]
        report(
            request,
            f"swarm: scale out, tasks {kind}: 1 worker {one:.0f} tasks/s, 4 workers {four:.0f} "
            f"tasks/s (x{four / one:.2f})",
        )
    # Sleeping tasks scale with the processes that wait (2 per worker); the CPU-bound
    # rows share this machine's 2 cores among every node, so they cannot.
    assert figures["0.2", 4] > 2 * figures["0.2", 1]

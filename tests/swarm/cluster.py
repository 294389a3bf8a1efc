"""A three-node Docker Swarm on this machine: the host engine manages, two containers join.

Each extra node is a container of the flask-celery-swarm-node stand-in image running its own
Docker engine (scripts/build-offline-images swarm-node). Images reach the nodes through
`docker save | docker load`, as they would without a registry. Everything made here is
removed by `Swarm.remove()`, and the host's swarm state is left as it was found.
"""

import ipaddress
import json
import os
import re
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

from harness.processes import REPO_ROOT, free_port, wait_for

NODE_IMAGE = "flask-celery-swarm-node:trixie"
PROXY_IMAGE = "haproxy:3.0"
# Flags that let dockerd run inside a container here without --privileged (which this
# machine refuses): see the node image's notes in scripts/build-offline-images.
NODE_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--cgroupns", "host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run",
]  # fmt: skip


def docker(*args: str, timeout: float = 120, check: bool = True, stdin: str | None = None):
    """Run `docker ARGS` on the host engine (the manager)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, input=stdin
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stderr}")
    return result


class ServiceLog:
    """A swarm service's log, every replica on every node, each line naming its node."""

    def __init__(self, service: str) -> None:
        self.service = service

    def output(self) -> str:
        return docker("service", "logs", "--no-trunc", self.service, timeout=60).stdout

    def nodes_by_task(self, pattern: str) -> dict[str, set[str]]:
        """Map each task id in lines matching `pattern` (one group: the id) to its nodes."""
        # A line reads `<service>.<slot>.<task>@<node>    | <message>`.
        line = re.compile(r"^\S+@(\S+)\s+\|\s.*" + pattern, re.MULTILINE)
        found: dict[str, set[str]] = {}
        for match in line.finditer(self.output()):
            found.setdefault(match.group(2), set()).add(match.group(1))
        return found


class Swarm:
    """The host engine as manager plus two node containers, and the stack deployed on it."""

    def __init__(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.stack = f"swarm-{suffix}"
        self.nodes = [f"swarm-{suffix}-node{i}" for i in (1, 2)]
        self.image = f"flask-celery-app:{self.stack}"
        self.images = [self.image]
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.was_active = docker("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == (
            "active"
        )
        self.had_gwbridge = self._network_exists("docker_gwbridge")
        self.manager = docker("info", "-f", "{{.Name}}").stdout.strip()
        self.env = {
            **os.environ,
            "STACK_NAME": self.stack,
            "APP_IMAGE": self.image,
            "WEB_PORT": str(self.port),
            "WEB_REPLICAS": "2",
            "WEB_CONCURRENCY": "1",
            "WORKER_REPLICAS": "3",
            "WORKER_CONCURRENCY": "2",
            "DIVIDE_DELAY_SECONDS": "2",
            # Late ack hands a cut-off task back after the visibility timeout (2 x 10 s).
            "CELERY_TASK_TIME_LIMIT": "10",
            "RATE_LIMIT_WRITES": "100000/minute",
            "RATE_LIMIT_READS": "100000/minute",
            "DEPLOY_TIMEOUT": "420",
        }

    @staticmethod
    def _network_exists(name: str) -> bool:
        return docker("network", "inspect", name, check=False).returncode == 0

    # --- building ---

    def start(self) -> None:
        """Build the images, start and join the nodes, load the images, deploy the stack."""
        docker("build", "-q", "-t", self.image, str(REPO_ROOT), timeout=900)
        subprocess.run(
            [str(REPO_ROOT / "scripts/build-offline-images"), "swarm-node", "haproxy"],
            check=True,
            capture_output=True,
            timeout=900,
        )
        address = self.bridge_address()
        if not self.was_active:
            docker("swarm", "init", "--advertise-addr", address)
        token = docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in self.nodes:
            docker(
                "run", "-d", "--name", node, "--hostname", node, *NODE_FLAGS,
                "-v", f"{node}:/var/lib/docker", NODE_IMAGE,
            )  # fmt: skip
        for node in self.nodes:
            wait_for(lambda n=node: self.on(n, "info", check=False).returncode == 0, 60, node)
            self.on(node, "swarm", "join", "--token", token, f"{address}:2377")
        self.load_images(self.image, PROXY_IMAGE)
        assert "created secret" in self.deploy().stdout
        self.token = self.exec_in(self.service("web"), "flask", "tokens", "create", "swarm")

    def deploy(self) -> subprocess.CompletedProcess:
        """Run scripts/deploy-swarm with this stack's settings; fail with its output."""
        result = subprocess.run(
            [str(REPO_ROOT / "scripts/deploy-swarm")],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    @staticmethod
    def bridge_address() -> str:
        """The host's address on Docker's default bridge: the nodes reach the manager there."""
        config = json.loads(docker("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]
        # Older engines leave Gateway out: it is then the subnet's first address.
        return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))

    def on(self, node: str, *args: str, check: bool = True, timeout: float = 120):
        """Run `docker ARGS` against a node's own engine (the host's for the manager)."""
        if node == self.manager:
            return docker(*args, check=check, timeout=timeout)
        return docker("exec", node, "docker", *args, check=check, timeout=timeout)

    def load_images(self, *images: str) -> None:
        """Copy images into every node's engine, without a registry."""

        def load(node: str) -> None:
            with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as saved:
                loaded = subprocess.run(
                    ["docker", "exec", "-i", node, "docker", "load", "-q"],
                    stdin=saved.stdout,
                    capture_output=True,
                    timeout=600,
                )
            assert saved.returncode == 0 and loaded.returncode == 0, loaded.stderr

        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(load, self.nodes))

    # --- reading ---

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def running_tasks(self, service: str) -> list[tuple[str, str]]:
        """(node, container name) of each running task of `service`."""
        lines = docker(
            "service", "ps", service, "--no-trunc", "--filter", "desired-state=running",
            "--format", "{{.Node}} {{.Name}}.{{.ID}} {{.CurrentState}}",
        ).stdout.splitlines()  # fmt: skip
        return [
            (node, name) for node, name, state, *_ in map(str.split, lines) if state == "Running"
        ]

    def exec_in(self, service: str, *command: str) -> str:
        """Run `command` in a running container of `service`, on whichever node has it."""
        node, container = self.running_tasks(service)[0]
        return self.on(node, "exec", container, *command).stdout.strip()

    def scale(self, service: str, replicas: int) -> None:
        docker("service", "scale", "--detach=false", f"{service}={replicas}", timeout=300)

    # --- removing ---

    def _stack_gone(self) -> bool:
        """Say whether the stack's containers and network are gone from this engine."""
        label = f"label=com.docker.stack.namespace={self.stack}"
        # Swarm can leave a replicated job's failed attempt behind after `stack rm` (seen: a
        # migrate run that lost a DNS race, exited 1 and was never reaped): remove those.
        exited = docker("ps", "-aq", "--filter", label, "--filter", "status=exited").stdout.split()
        if exited:
            docker("rm", *exited, check=False)
        return not docker("ps", "-aq", "--filter", label).stdout.strip() and not (
            self._network_exists(f"{self.stack}_app")
        )

    def remove(self) -> None:
        """Remove the stack, its secrets, volumes, nodes and images; leave the swarm as found."""
        docker("stack", "rm", self.stack, check=False)
        wait_for(self._stack_gone, 120, "the stack's containers and network to go")
        secrets = docker(
            "secret", "ls", "-q", "--filter", f"name={self.stack}_", check=False
        ).stdout.split()
        if secrets:
            docker("secret", "rm", *secrets, check=False)
        for volume in ("postgres-data", "redis-data"):
            docker("volume", "rm", f"{self.stack}_{volume}", check=False)
        for node in self.nodes:
            docker("exec", node, "docker", "swarm", "leave", "--force", check=False)
            docker("rm", "-f", "-v", node, check=False)
            docker("volume", "rm", node, check=False)
            docker("node", "rm", "--force", node, check=False)
        if self.was_active:
            node_id = docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
            docker("node", "update", "--label-rm", "flask-celery-data", node_id, check=False)
        else:
            docker("swarm", "leave", "--force", check=False)
            if not self.had_gwbridge:
                docker("network", "rm", "docker_gwbridge", check=False)
        docker("image", "rm", *self.images, check=False)

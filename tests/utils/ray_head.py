"""A real Ray head on loopback for tests: ``ray start --head --block`` in its own process group.

Every listener stays on 127.0.0.1 (``--node-ip-address``, ``--dashboard-host`` and
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, without which Ray 2.60 still binds some servers to
every interface), every port is picked free (the two metrics ports Ray fixes are moved by
environment), the session folder lives in the test's tmp folder, and usage stats are off so
nothing leaves the machine. The process started IS the head: it is stopped through its own
process group, never with ``ray stop``, which would stop every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.utils.ports import free_port
from tests.utils.requires import unavailable

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 180.0
"""Seconds for the head to answer the Job Submission API (20-60 s on two busy cores)."""
STOP_TIMEOUT = 30.0
GRACE = 5.0
"""Seconds a process that outlived the head gets between SIGTERM and SIGKILL."""
WORKER_PORTS = 32
"""Ports handed to Ray's workers (one each: the job supervisors and any driver's tasks)."""
BLOCKING = "will now block forever"
"""What ``ray start --block`` prints once the node is up."""
MAX_TEMP_DIR = 40
"""Longest session root kept: Ray adds ~60 characters of session and socket names below it,
and a unix socket path may not exceed 107."""


@dataclass
class RayHead:
    """A running head: its addresses, its process, the ports it was given and its log."""

    process: subprocess.Popen[bytes]
    dashboard_url: str
    """``http://127.0.0.1:PORT``: the Job Submission API (``JobSubmissionClient``'s address)."""
    address: str
    """``127.0.0.1:PORT``: the GCS, for ``ray.init(address=...)``."""
    ports: dict[str, int]
    temp_dir: Path
    log: Path
    env: dict[str, str] = field(repr=False)
    """The environment the head (and so every job's entrypoint) runs with."""

    def pids(self) -> set[int]:
        """The head's process and every live descendant (GCS, raylet, dashboard, workers)."""
        try:
            root = psutil.Process(self.process.pid)
            return {root.pid} | {child.pid for child in root.children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def listeners(self) -> list[tuple[int, str, int]]:
        """``(pid, ip, port)`` of every TCP/UDP socket the head's processes listen on."""
        found: list[tuple[int, str, int]] = []
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                for conn in psutil.Process(pid).net_connections(kind="inet"):
                    unconnected_udp = conn.type == socket.SOCK_DGRAM and not conn.raddr
                    if conn.status == psutil.CONN_LISTEN or unconnected_udp:
                        found.append((pid, _unmapped(conn.laddr.ip), conn.laddr.port))
        return found

    def remote_peers(self) -> list[tuple[int, str, int]]:
        """``(pid, ip, port)`` of every connection of the head's processes to a peer off loopback."""
        found: list[tuple[int, str, int]] = []
        for pid in self.pids():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                for conn in psutil.Process(pid).net_connections(kind="inet"):
                    if conn.raddr and not _is_loopback(conn.raddr.ip):
                        found.append((pid, conn.raddr.ip, conn.raddr.port))
        return found

    def log_tail(self, lines: int = 60) -> str:
        """The end of the head's own output, for failure messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _unmapped(ip: str) -> str:
    """``ip`` without the IPv4-mapped prefix: gRPC binds ``[::ffff:127.0.0.1]`` for 127.0.0.1."""
    return ip.removeprefix("::ffff:")


def _is_loopback(ip: str) -> bool:
    return _unmapped(ip).startswith("127.") or ip == "::1"


def _session_root(tmp_path: Path) -> tuple[Path, Path | None]:
    """Ray's ``--temp-dir``: ``tmp_path/ray``, reached through a short symlink when that path is
    too long for the unix sockets Ray creates below it (the second value: the link's own
    folder, for the caller to remove). The files stay in the test's tmp folder either way."""
    root = tmp_path / "ray"
    root.mkdir(parents=True, exist_ok=True)
    if len(str(root)) <= MAX_TEMP_DIR:
        return root, None
    short = Path(tempfile.mkdtemp(prefix="ray-"))
    (short / "s").symlink_to(root, target_is_directory=True)
    return short / "s", short


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen


def head_env() -> dict[str, str]:
    """The environment for the head: this venv's ``bin`` first on PATH (so an entrypoint's
    ``python`` is the test interpreter), loopback only, no usage stats, no inherited cluster
    (``RAY_*``) and no Arkor settings (``ARKOR_*``: a job gets those from whoever submits it)."""
    env = {
        name: value for name, value in os.environ.items() if not name.startswith(("RAY_", "ARKOR_"))
    }
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, *env.get("PATH", "").split(os.pathsep)])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # a test head has nothing to drain: stop at once instead of waiting 30 s on SIGTERM
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"
    return env


@contextlib.contextmanager
def ray_head(
    tmp_path: Path,
    *,
    num_cpus: int = 2,
    num_gpus: int = 0,
    resources: dict[str, float] | None = None,
) -> Iterator[RayHead]:
    """A Ray head on loopback until the block ends, answering its Job Submission API.

    ``num_gpus`` is what the head declares, whatever the machine has: a job asking for GPUs
    is scheduled against it (Ray sets the job's ``CUDA_VISIBLE_DEVICES``). ``resources`` are
    custom resources (``--resources``). On exit the head's processes are stopped (SIGTERM,
    then SIGKILL) and none may remain.
    """
    if importlib.util.find_spec("ray") is None:
        unavailable("a Ray head needs Ray: pip install 'arkor[ray]'")
    temp_dir, link_folder = _session_root(tmp_path)
    names = (
        "gcs",
        "dashboard",
        "client_server",
        "node_manager",
        "object_manager",
        "dashboard_agent_listen",
        "dashboard_agent_grpc",
        "runtime_env_agent",
        "metrics_export",
        "autoscaler_metrics",
        "dashboard_metrics",
    )
    picked = _free_ports(len(names) + WORKER_PORTS)
    ports = dict(zip(names, picked, strict=False))
    worker_ports = picked[len(names) :]
    env = head_env()
    env["AUTOSCALER_METRIC_PORT"] = str(ports["autoscaler_metrics"])
    env["DASHBOARD_METRIC_PORT"] = str(ports["dashboard_metrics"])
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        LOOPBACK,
        "--port",
        str(ports["gcs"]),
        "--include-dashboard",
        "true",
        "--dashboard-host",
        LOOPBACK,
        "--dashboard-port",
        str(ports["dashboard"]),
        "--ray-client-server-port",
        str(ports["client_server"]),
        "--node-manager-port",
        str(ports["node_manager"]),
        "--object-manager-port",
        str(ports["object_manager"]),
        "--dashboard-agent-listen-port",
        str(ports["dashboard_agent_listen"]),
        "--dashboard-agent-grpc-port",
        str(ports["dashboard_agent_grpc"]),
        "--runtime-env-agent-port",
        str(ports["runtime_env_agent"]),
        "--metrics-export-port",
        str(ports["metrics_export"]),
        "--worker-port-list",
        ",".join(map(str, worker_ports)),
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        str(num_gpus),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
        "--log-style",
        "record",
        "--log-color",
        "false",
    ]
    if resources:
        command += ["--resources", json.dumps(resources)]
    log = tmp_path / "ray" / "head.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    head = RayHead(
        process=process,
        dashboard_url=f"http://{LOOPBACK}:{ports['dashboard']}",
        address=f"{LOOPBACK}:{ports['gcs']}",
        ports={**ports, **{f"worker_{i}": port for i, port in enumerate(worker_ports)}},
        temp_dir=temp_dir,
        log=log,
        env=env,
    )
    try:
        _wait_ready(head)
        yield head
    finally:
        try:
            _stop(head)
        finally:
            if link_folder is not None:
                shutil.rmtree(link_folder, ignore_errors=True)


def _wait_ready(head: RayHead) -> None:
    """Return once ``ray start`` has finished starting (it says it now blocks) and a
    JobSubmissionClient lists jobs; fail with the head's log tail otherwise.

    The dashboard answers before ``ray start`` is done; a head stopped in that window ignores
    SIGTERM until its startup call returns, so readiness waits for both.
    """
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | str = "ray start has not said it blocks yet"
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise RuntimeError(
                f"ray start exited with {head.process.returncode} before its dashboard "
                f"answered; its output ends:\n{head.log_tail()}"
            )
        if BLOCKING in head.log.read_text(errors="replace"):
            try:
                JobSubmissionClient(head.dashboard_url).list_jobs()
                return
            except Exception as error:  # the dashboard refuses, 404s or 5xxs while it starts
                last = error
        time.sleep(0.5)
    raise RuntimeError(
        f"the Ray head's Job Submission API at {head.dashboard_url} did not answer within "
        f"{START_TIMEOUT:.0f} s (last error: {last}); its output ends:\n{head.log_tail()}"
    )


def _stop(head: RayHead) -> None:
    """SIGTERM the head's process group, then each of its processes that left the group (Ray
    gives workers and job entrypoints sessions of their own, and an entrypoint can outlive its
    supervisor), then SIGKILL whatever is left, including any process naming the session folder."""
    known = head.pids()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.process.wait(STOP_TIMEOUT)
    strays = _processes(known)
    for process in strays:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _wait_gone(strays, GRACE)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.process.pid, signal.SIGKILL)
    leftovers = _processes(known | _naming(head.temp_dir))
    for process in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    head.process.wait(STOP_TIMEOUT)
    survivors = _wait_gone(leftovers, STOP_TIMEOUT)
    if survivors:
        raise RuntimeError(f"processes of the Ray head survived SIGKILL: {survivors}")


def _wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``processes`` still alive after up to ``timeout`` seconds. A zombie counts as
    gone: an orphan's zombie waits on init, which reaps it on its own schedule."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in processes if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie (``is_running`` also tells a reused pid from the original)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _naming(folder: Path) -> set[int]:
    """Processes whose command line names ``folder`` (Ray passes its session folder to each)."""
    needle = str(folder)
    found: set[int] = set()
    for process in psutil.process_iter(["cmdline"]):
        if any(needle in part for part in process.info["cmdline"] or ()):
            found.add(process.pid)
    return found


def _processes(pids: set[int]) -> list[psutil.Process]:
    """The live, non-zombie processes among ``pids``."""
    found: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayHead]:
    """One Ray head on loopback for the whole test session (2 CPUs, no GPUs)."""
    with ray_head(tmp_path_factory.mktemp("ray")) as head:
        yield head

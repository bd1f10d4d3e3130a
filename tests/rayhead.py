"""
A real local Ray head for the tests: `ray start --head` on loopback with two CPUs, free ports, its own temp
dir; and the means to kill it as a lost machine would go (every process of it, SIGKILL).
"""

import os
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from browser import free_port

RAY = Path(sys.executable).parent / "ray"


def head_pids(temp_dir):
    """The processes of our head: those whose command line names its temp dir (gcs_server, raylet, its Python
    helpers), and their descendants (agents and workers rename themselves ray::...)."""
    parent, cmd = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                cmd[int(p)] = Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")
                parent[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    ours = {pid for pid, c in cmd.items() if temp_dir in c and pid != os.getpid()}
    grew = True
    while grew:
        more = {pid for pid, pp in parent.items() if pp in ours} - ours
        ours |= more
        grew = bool(more)
    return sorted(ours)


def kill_head(temp_dir):
    for pid in head_pids(temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def local_head():
    """`ray start --head` on 127.0.0.1, free ports (fixed ones collide under pytest -n 2), a small object store
    (containers have a small /dev/shm), its own short temp dir (Ray's unix sockets live there)."""
    temp = tempfile.mkdtemp(prefix="zthray", dir="/tmp")
    port = free_port()
    # a block of worker ports of this session's own, below the system's ephemeral range (32768 on Linux), where
    # free_port() picks the head's other ports: a block from 20000 + 400 * 100 once covered one of them
    workers = 10000 + (os.getpid() % 200) * 100
    ports = {f"--{k}": str(free_port()) for k in ("ray-client-server-port", "node-manager-port", "object-manager-port",
                                                  "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                  "runtime-env-agent-port", "metrics-export-port")}
    cmd = [str(RAY), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
           "--object-store-memory", str(100 * 1024**2), "--include-dashboard", "false", "--disable-usage-stats",
           "--temp-dir", temp, "--min-worker-port", str(workers), "--max-worker-port", str(workers + 99),
           *[x for kv in ports.items() for x in kv]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        kill_head(temp)
        raise RuntimeError(f"ray start failed: {p.stderr[-2000:]}")
    try:
        yield dict(address=f"127.0.0.1:{port}", temp=temp)
    finally:
        kill_head(temp)


def cpus(address):
    """(free, total) CPUs of the cluster at address, asked from a process of its own (ray.init in the test
    process would tie it to one cluster for good)."""
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(ray.available_resources().get('CPU', 0), ray.cluster_resources().get('CPU', 0))" % address)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"could not ask the Ray head at {address}: {p.stderr[-1000:]}")
    free, total = p.stdout.split()[-2:]
    return float(free), float(total)

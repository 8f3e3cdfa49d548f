"""A throw-away single-node SLURM cluster for tests: install, configure, start, stop by PID.

Installs Debian's ``slurm-wlm`` and ``munge`` with apt when they are missing (CI runs as root), writes a
``slurm.conf`` for this machine only (no cgroup enforcement: proctrack/linuxproc, task/none; the node's
real CPU count and memory; state, spool, logs and the munge socket in a temporary folder; free ports),
and runs ``munged``, ``slurmctld`` and ``slurmd`` in the foreground as children of the test, so they are
stopped by their PIDs and nothing is left behind. Clients (sbatch, squeue, scontrol) find the cluster
through the ``SLURM_CONF`` environment variable.

Usable by hand too: ``python tests/slurm_cluster.py DIR`` starts a cluster, prints the ``export`` line
and stops it on Enter.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "munge")


class ClusterUnavailable(RuntimeError):
    """SLURM cannot be installed here (the caller skips with this reason)."""


def ensure_installed() -> None:
    """apt-get install slurm-wlm munge when a daemon is missing (root + apt needed)."""
    if all(_which(d) for d in DAEMONS):
        return
    if os.geteuid() != 0:
        raise ClusterUnavailable("slurm-wlm/munge are not installed and installing them needs root")
    if not shutil.which("apt-get"):
        raise ClusterUnavailable("slurm-wlm/munge are not installed and there is no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if done.returncode != 0 or not all(_which(d) for d in DAEMONS):
        raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr[-2000:]}")


def _which(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line(name: str) -> str:
    """The node as slurmd itself measures it (CPUs, RealMemory, ...)."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, encoding="utf-8", errors="replace", check=True).stdout
    fields = out.splitlines()[0].split()
    keep = [f for f in fields[1:] if f.split("=")[0] in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                           "ThreadsPerCore", "RealMemory")]
    return f"NodeName={name} NodeAddr=127.0.0.1 {' '.join(keep)} State=UNKNOWN"


def write_config(root: Path, partition: str = "debug") -> Path:
    """slurm.conf (+ a munge key) for a one-node cluster whose files all live under ``root``."""
    node = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    conf = f"""\
ClusterName=segkittest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=600
{_node_line(node)}
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    path = root / "slurm.conf"
    path.write_text(conf)
    return path


class SlurmCluster:
    """Context manager: start munged + slurmctld + slurmd under ``root``; stop them by PID on exit."""

    def __init__(self, root: Path, partition: str = "debug") -> None:
        self.root, self.partition = Path(root), partition
        self.procs: list[subprocess.Popen] = []
        self.conf: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        ensure_installed()
        self.conf = write_config(self.root, self.partition)
        key = self.root / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}", "--force"], check=True,
                       capture_output=True)
        m = self.root / "munge"
        self._spawn([_which("munged"), "--foreground", "--force", f"--key-file={key}",
                     f"--socket={m}/munge.socket", f"--pid-file={m}/munged.pid", f"--log-file={m}/munged.log",
                     f"--seed-file={m}/munged.seed"], "munged")
        _wait(lambda: (m / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn([_which("slurmctld"), "-D", "-i", "-f", str(self.conf)], "slurmctld")
        self._spawn([_which("slurmd"), "-D", "-f", str(self.conf)], "slurmd")
        _wait(self._node_idle, timeout, f"the node did not become idle (see {self.root}/slurmd.log)")
        return self

    def _spawn(self, cmd: list[str], name: str) -> None:
        log = open(self.root / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _node_idle(self) -> bool:
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[0]} exited with {p.returncode}: {self._tail(p)}")
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, encoding="utf-8", errors="replace", env=self.env)
        return out.returncode == 0 and out.stdout.strip() in ("idle", "mix", "alloc")

    def _tail(self, proc: subprocess.Popen) -> str:
        name = Path(proc.args[0]).name
        files = [self.root / f"{name}.out", self.root / f"{name}.log", self.root / "munge" / "munged.log"]
        return " | ".join(f.read_text()[-1500:] for f in files if f.is_file())

    def stop(self) -> None:
        """SIGTERM each daemon by PID (reverse start order), SIGKILL after 15 s."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait(predicate, timeout: float, message: str) -> None:  # noqa: ANN001
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise RuntimeError(message)


if __name__ == "__main__":
    import sys

    with SlurmCluster(Path(sys.argv[1])) as cluster:
        print(f"export SLURM_CONF={cluster.conf}")
        input("cluster running; press Enter to stop it\n")

"""``hydra/launcher=slurm`` for real: a one-node SLURM cluster on localhost runs a 2-job sweep through submitit.

The cluster lives in a temporary folder: a generated slurm.conf, slurmctld and slurmd (and munged, for
authentication) on free ports, stopped at the end. Skipped, with the reason, where slurm-wlm is not installed
(Debian/Ubuntu: ``apt-get install slurm-wlm munge``), where the daemons cannot run as root, or where they do not start.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import TINY, TRAIN, run_dirs, summary, train

pytestmark = pytest.mark.slow

DAEMONS = ("slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plugin(name: str) -> bool:
    return bool(glob.glob(f"/usr/lib*/**/slurm*/{name}.so", recursive=True))


def _sudo() -> list[str] | None:
    """How to run a daemon as root: directly, through passwordless sudo (CI runners), or not at all."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


class Cluster:
    def __init__(self, root: Path, sudo: list[str]):
        self.root, self.sudo = root, sudo
        self.procs: list[subprocess.Popen] = []
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.node = socket.gethostname().split(".")[0]

    def _start(self, name: str, args: list[str]) -> None:
        log = (self.root / f"{name}.out").open("w")
        self.procs.append(subprocess.Popen([*self.sudo, *args], stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(self.root.glob("*.out")))

    def start(self) -> None:
        r = self.root
        if shutil.which("munged"):
            key = r / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
            sock = r / "munge.sock"
            self._start("munged", ["munged", "-F", "-f", f"--key-file={key}", f"--socket={sock}",
                                   f"--pid-file={r / 'munged.pid'}", f"--log-file={r / 'munged.log'}",
                                   f"--seed-file={r / 'munged.seed'}"])  # fmt: skip
            auth = f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={sock}\n"
            for _ in range(100):
                if sock.exists():
                    break
                time.sleep(0.1)
        elif _plugin("auth_none") and _plugin("cred_none"):
            auth = "AuthType=auth/none\nCredType=cred/none\n"
        else:
            pytest.skip("neither munged nor Slurm's auth/none plugin is installed (apt-get install munge)")
        (r / "state").mkdir()
        (r / "spool").mkdir()
        self.conf.write_text(
            f"ClusterName=encoderlab\nSlurmctldHost={self.node}(127.0.0.1)\n{auth}"
            f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\nSlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={r / 'state'}\nSlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'slurmctld.pid'}\nSlurmdPidFile={r / 'slurmd.pid'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSchedulerType=sched/builtin\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\nJobAcctGatherType=jobacct_gather/none\n"
            "AccountingStorageType=accounting_storage/none\nMpiDefault=none\nReturnToService=2\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=1000 State=UNKNOWN\n"
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n"
        )
        self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        time.sleep(1)
        self._start("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        deadline = time.time() + 60
        while time.time() < deadline:
            p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if p.stdout.strip() == "idle":
                return
            if any(proc.poll() is not None for proc in self.procs):
                break
            time.sleep(1)
        pytest.skip(f"the SLURM daemons did not start on this machine:\n{self.logs()}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--partition=debug"], capture_output=True, env=self.env)
        for _ in range(30):  # let the jobs' steps end before their slurmd goes
            p = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=self.env)
            if not p.stdout.strip():
                break
            time.sleep(1)
        for proc in reversed(self.procs):
            if self.sudo:
                subprocess.run([*self.sudo, "kill", str(proc.pid)], capture_output=True)
            else:
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture()
def slurm_cluster():
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        pytest.skip(f"slurm-wlm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge")
    sudo = _sudo()
    if sudo is None:
        pytest.skip("slurmd must run as root (to start jobs as their user); no root and no passwordless sudo here")
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: a socket path has at most 107 characters
    root.chmod(0o755)
    cluster = Cluster(root, sudo)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_two_job_sweep_runs_as_slurm_jobs_and_both_finish(tmp_path, cli_env, slurm_cluster):
    sweep = tmp_path / "sweep"
    env = cli_env | {"SLURM_CONF": str(slurm_cluster.conf)}
    # the launcher's defaults ask for a GPU, 8 CPUs and 64 GB: this node has none of that
    launcher = ["hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null"]
    args = ["-m", "hydra/launcher=slurm", "task=csv_example", "seed=1,2", *TINY, "trainer.accelerator=cpu"]

    train([*args, *launcher, "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"], env, tmp_path)

    runs = run_dirs(sweep)
    assert len(runs) == 2
    for run_dir in runs:
        s = summary(run_dir)
        assert s["status"] == "finished" and 0.0 <= s["test"]["accuracy"] <= 1.0
    assert sorted(summary(d)["seed"] for d in runs) == [1, 2]
    # each job ran under SLURM: submitit kept its sbatch script and one log per array task
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    assert "#SBATCH --array=0-1" in script.read_text()
    assert len(list(sweep.glob(".submitit/*_*/*_log.out"))) == 2


def _wait_for(what: str, predicate, proc: subprocess.Popen, cluster: Cluster, out: Path, timeout: float = 900):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if value := predicate():
            return value
        time.sleep(0.2)
    state = f"exit {proc.returncode}" if proc.poll() is not None else "still running"
    raise AssertionError(f"no {what} after {timeout:.0f} s ({state})\n{out.read_text()[-3000:]}\n{cluster.logs()}")


def _job_log(run_dir: Path) -> str:
    return "".join(f.read_text(errors="replace") for f in run_dir.glob("*.log"))


def test_jobs_requeued_mid_run_resume_from_their_checkpoints_and_end_as_an_uninterrupted_run(
    tmp_path, cli_env, slurm_cluster
):
    """Two jobs of the same run, each stopped at step 7 of 12: one by ``scontrol requeue`` (SIGTERM; SLURM starts it
    again and it continues from the last.ckpt of step 6), one by the requeue signal SIGUSR1 (it saves last.ckpt at
    step 7 and requeues itself). Both end exactly as an uninterrupted run."""
    sweep, reference = tmp_path / "sweep", tmp_path / "reference"
    env = cli_env | {"SLURM_CONF": str(slurm_cluster.conf)}
    launcher = ["hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=null"]
    # 38 training reviews in batches of 8, 4 batches an epoch (trainer=debug), 3 epochs: 12 optimizer steps
    args = ["task=csv_example", *TINY, "trainer.accelerator=cpu", "batch_size=8", "trainer.max_epochs=3",
            "optimizer.lr=1e-3", "trainer.deterministic=true", "seed=1"]  # fmt: skip
    train([*args, f"hydra.run.dir={reference}"], env, tmp_path)

    # last.ckpt every 3 steps; tags change nothing a run computes: both jobs must end as the reference
    cmd = [TRAIN, "-m", "hydra/launcher=slurm", *args, "callbacks.checkpoint_every_n_steps=3", "tags=[term],[usr1]",
           *launcher, "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    log = tmp_path / "sweep.out"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env | {"ENCODERLAB_WAIT_AT_STEP": "7"}, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        runs = _wait_for("job dirs", lambda: len(run_dirs(sweep)) == 2 and run_dirs(sweep), proc, slurm_cluster, log)
        by_term, by_usr1 = sorted(runs, key=_job_number)  # array tasks 0 and 1
        for run_dir in runs:  # both jobs wait at step 7 for a signal
            _wait_for(f"step 7 in {run_dir.name}", lambda d=run_dir: "waiting at step 7" in _job_log(d), proc,
                      slurm_cluster, log)  # fmt: skip
        (array_job,) = {j.split("_")[0] for j in _squeue(env, "%i")}
        subprocess.run(["scontrol", "requeue", f"{array_job}_0"], env=env, check=True)
        subprocess.run(["scancel", "--signal=USR1", f"{array_job}_1"], env=env, check=True)
        for task in (f"{array_job}_0", f"{array_job}_1"):  # SLURM holds a requeued job 2 minutes: start it now
            _wait_for(f"{task} requeued", lambda t=task: _squeue(env, "%T:%r", t) == ["PENDING:BeginTime"], proc,
                      slurm_cluster, log)  # fmt: skip
            subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], env=env, check=True)
        proc.wait(timeout=1200)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-4000:]

    ref = summary(reference)
    for run_dir in (by_term, by_usr1):
        s = summary(run_dir)
        assert s["status"] == "finished" and s["attempts"] == 2, (s, _job_log(run_dir)[-3000:])
        assert s["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
        assert s["test"] == ref["test"] and s["val"] == ref["val"] and s["steps"] == ref["steps"] == 12
        assert s["train_seconds"] > 0
        assert not (run_dir / "checkpoints").exists() and (run_dir / "hf").is_dir()
        assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # Lightning's own SLURM requeue stayed out
    assert "SIGUSR1: saved last.ckpt at step 7" in _job_log(by_usr1)
    assert "requeued SLURM job" in _job_log(by_usr1)


def _job_number(run_dir: Path) -> int:
    import yaml

    return int(yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"])


def _squeue(env: dict, fmt: str, job: str | None = None) -> list[str]:
    which = ["-j", job] if job else []
    return subprocess.run(["squeue", "-h", *which, "-o", fmt], capture_output=True, text=True, env=env).stdout.split()

"""``run_cli``: an ``encoderlab-*`` command run as ``subprocess.run`` would run it, forked from a zygote
(tests/zygote.py) that has the libraries imported already, so a CLI test pays for its own work only.

Each call is still a process of its own (exit code, signals, environment, working directory, output). The zygote
is started once per test process and per value of the environment variables that modules read at import time;
``ENCODERLAB_TEST_ZYGOTE=0`` runs every command as a fresh process instead.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ZYGOTE = Path(__file__).with_name("zygote.py")
BIN = Path(sys.executable).parent
# read once, when a library is imported: a zygote serves only calls that agree with it on these
IMPORT_TIME = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "HF_DATASETS_CACHE",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TRANSFORMERS_VERBOSITY",
    "TOKENIZERS_PARALLELISM",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "CUDA_VISIBLE_DEVICES",
)
_zygotes: dict[tuple, subprocess.Popen] = {}


def _key(env: dict[str, str]) -> tuple:
    return tuple(env.get(k) for k in IMPORT_TIME)


def _zygote(env: dict[str, str]) -> subprocess.Popen:
    key = _key(env)
    z = _zygotes.get(key)
    if z is None or z.poll() is not None:
        base = {k: v for k, v in os.environ.items() if k not in IMPORT_TIME}
        base |= {k: env[k] for k in IMPORT_TIME if k in env}
        z = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=base)
        z.pending = b""  # type: ignore[attr-defined]  (answers read but not yet taken)
        _zygotes[key] = z
    return z


def _answer(z: subprocess.Popen, timeout: float | None) -> dict | None:
    """The zygote's next answer line, or None when none came within ``timeout`` seconds."""
    fd = z.stdout.fileno()
    while b"\n" not in z.pending:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"the test zygote ({ZYGOTE.name}) ended: exit {z.wait()}")
        z.pending += chunk
    line, z.pending = z.pending.split(b"\n", 1)
    return json.loads(line)


def run_cli(
    script: str,
    args: list[str],
    env: dict[str, str],
    cwd: Path | str,
    timeout: float = 600,
    input: str | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """``BIN/script ARGS`` (or ``python SCRIPT ARGS`` for a path ending in .py) with exactly ``env`` in ``cwd``
    (``input`` on its standard input); a CompletedProcess with text stdout and stderr. ``fresh``: a new process,
    not a child of the zygote."""
    script = str(script)
    cmd = [sys.executable, script, *args] if script.endswith(".py") else [str(BIN / script), *args]
    if fresh or os.environ.get("ENCODERLAB_TEST_ZYGOTE", "1") == "0" or env.get("ENCODERLAB_TEST_ZYGOTE") == "0":
        return subprocess.run(cmd, cwd=cwd, env=env, input=input, capture_output=True, text=True, timeout=timeout)
    z = _zygote(env)
    with tempfile.TemporaryDirectory() as tmp:
        out, err, stdin = Path(tmp) / "out", Path(tmp) / "err", Path(tmp) / "in"
        stdin.write_text(input or "")
        request = {"script": script, "argv": cmd, "env": env, "cwd": str(cwd), "out": str(out), "err": str(err)}
        request["in"] = str(stdin)
        z.stdin.write((json.dumps(request) + "\n").encode())
        z.stdin.flush()
        pid = _answer(z, None)["pid"]
        answer = _answer(z, timeout)
        if answer is None:
            os.kill(pid, signal.SIGKILL)
            _answer(z, None)
            raise subprocess.TimeoutExpired(cmd, timeout, out.read_text(), err.read_text())
        text = {name: f.read_text(errors="replace") for name, f in (("out", out), ("err", err))}
        return subprocess.CompletedProcess(cmd, answer["returncode"], text["out"], text["err"])

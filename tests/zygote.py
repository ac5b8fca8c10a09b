"""A process that imports encoderlab's command-line tools and their libraries once, then forks one child per call.

A fresh ``encoderlab-train`` process spends most of a short CLI test importing torch, Lightning, torchmetrics and
transformers before any of its own work starts, and the CLI tests make many such calls. A child forked
from this process starts with those modules already imported and is otherwise a process of its own: its own
arguments, environment, working directory, output files, exit code and death by signal (a kill switch that SIGKILLs
the child is seen as such). The tests call it through ``clirun.run_cli``.

A call is a console script of encoderlab (``encoderlab-train`` ...) or a Python file run as ``python FILE ARGS``.

Protocol, one JSON line each way: the caller writes ``{"script", "argv", "env", "cwd", "in", "out", "err"}``; this
process answers ``{"pid": N}`` at once and ``{"returncode": RC}`` when the child has ended (``-SIG`` for a signal).

Children share this process's hash seed and the modules' import-time state (read once here from its environment:
the caller starts one zygote per value of the variables that modules read at import, see ``clirun.IMPORT_TIME``).
Nothing here runs a tensor operation before forking, so no thread pool is inherited.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from importlib.metadata import entry_points

SCRIPTS = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("encoderlab-")}
PRELOAD = ["torch", "pytorch_lightning", "torchmetrics", "transformers", "datasets", "hydra", "sklearn"]


def _entry(script: str):
    module, _, attr = SCRIPTS[script].partition(":")
    return getattr(importlib.import_module(module), attr)


def _child(request: dict) -> None:
    """Become the requested process. It ends as a fresh one would: its exit code or uncaught exception leaves
    through the zygote's own frames (nothing there catches it), so the interpreter shuts down as usual (threads
    joined, executors' workers told to stop, atexit handlers run, output flushed)."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    fds = [os.open(request.get("in") or os.devnull, os.O_RDONLY)]
    fds += [os.open(request[k], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for k in ("out", "err")]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    script = request["script"]
    sys.argv = list(request["argv"])
    if script.endswith(".py"):  # `python SCRIPT ARGS`
        import runpy

        sys.argv = sys.argv[1:]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
        sys.exit(0)
    sys.exit(_entry(script)())


def serve() -> None:
    proto_in, proto_out = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what the imports print goes nowhere near the protocol
    sys.path[0] = os.path.dirname(sys.executable)  # as for a console script: the venv's bin, not tests/
    for script in SCRIPTS:
        try:
            _entry(script)
        except Exception:  # noqa: BLE001 - the child imports it again and reports the error itself
            pass
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001
            pass
    requests = os.fdopen(proto_in, "r")
    answers = os.fdopen(proto_out, "w")
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()

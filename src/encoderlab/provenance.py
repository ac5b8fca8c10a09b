"""Where a result came from: the machine (CPU model, the CPU features that decide bf16 and int8 speed, threads, GPU)
and the commit of encoderlab's own checkout. Every run records both in its ``summary.json``; stored results
(``encoderlab-report --store``) and benchmarks copy them."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Optional

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")
_MACHINE: Optional[dict[str, Any]] = None


def machine_info() -> dict[str, Any]:
    """This machine: CPU model, the relevant CPU features present, torch's threads now, and the GPU (or null)."""
    global _MACHINE
    if _MACHINE is None:
        cpu, flags = platform.processor() or platform.machine(), set()
        try:
            text = Path("/proc/cpuinfo").read_text()
            model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
            cpu = model.group(1).strip() if model else cpu
            found = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
            flags = set(found.group(1).split()) if found else set()
        except OSError:
            pass
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        _MACHINE = {
            "cpu": cpu,
            "flags": " ".join(f for f in CPU_FLAGS if f in flags),
            "gpu": gpu,
        }
    import torch

    return {**_MACHINE, "threads": torch.get_num_threads()}


def git_commit(cwd: Optional[str | Path] = None) -> Optional[str]:
    """``git rev-parse --short HEAD`` of the checkout that holds ``cwd`` (default: encoderlab's own source, the code
    that ran), or null outside one (an installed wheel)."""
    cwd = cwd if cwd is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None

"""encoderlab as a package: its configs ship inside it, a user's own config dirs extend them (and may replace a
packaged option), ``encoderlab-init`` starts a project, and (slow) the built wheel works from an empty folder."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import TINY

from encoderlab.cli.init import main as init_main
from encoderlab.cli.train import CONF_DIR

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "encoderlab-train")
# a packaged option replaced by the user's file of the same name
TINY_MODEL = "name: bert_tiny\nfrom_scratch: true\nnum_hidden_layers: 3\nhidden_size: 64\nnum_attention_heads: 2\n"


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


@pytest.fixture()
def project(tmp_path, monkeypatch) -> Path:
    """A project written by encoderlab-init, plus a conf/model/bert_tiny.yaml of its own; the cwd is elsewhere."""
    monkeypatch.delenv("ENCODERLAB_CONFIG_PATH", raising=False)
    init_main([str(tmp_path / "proj")])
    (tmp_path / "proj/conf/model/bert_tiny.yaml").parent.mkdir()
    (tmp_path / "proj/conf/model/bert_tiny.yaml").write_text(TINY_MODEL)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path / "proj"


def test_init_writes_a_runnable_project_and_never_overwrites(tmp_path, capsys):
    init_main([str(tmp_path / "p")])
    names = {str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*") if p.is_file()}
    assert names == {"README.md", "conf/task/my_task.yaml", "conf/experiment/my_experiment.yaml", "data/my_task.csv"}
    rows = (tmp_path / "p/data/my_task.csv").read_text().splitlines()
    assert (
        rows[0] == "text,label"
        and len(rows) == 41
        and {r.rsplit(",", 1)[1] for r in rows[1:]}
        == {
            "billing",
            "technical",
        }
    )
    readme = (tmp_path / "p/README.md").read_text()
    assert "encoderlab-train task=my_task" in readme and "--config-dir" in readme

    (tmp_path / "q/data").mkdir(parents=True)
    (tmp_path / "q/data/my_task.csv").write_text("mine")
    with pytest.raises(SystemExit) as e:
        init_main([str(tmp_path / "q")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("encoderlab-init: error: ") and "my_task.csv exists" in err and "\n" not in err
    assert (tmp_path / "q/data/my_task.csv").read_text() == "mine"
    assert not (tmp_path / "q/conf").exists()  # nothing written


def test_a_user_config_dir_adds_options_and_replaces_packaged_ones(project, monkeypatch):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException):
        compose("task=my_task")  # not on the search path yet

    monkeypatch.setenv("ENCODERLAB_CONFIG_PATH", str(project / "conf"))
    cfg = compose("experiment=my_experiment", "model=bert_tiny")
    assert cfg.task.name == "my_task" and cfg.task.data_files.train == "data/my_task.csv"
    assert cfg.experiment_name == "my_experiment" and cfg.trainer.max_epochs == 3
    assert cfg.model.num_hidden_layers == 3 and cfg.model.hidden_size == 64  # the user's bert_tiny, not encoderlab's
    assert compose("task=sst2").task.name == "sst2"  # packaged options stay


def test_the_current_folders_conf_is_found_without_flags(project, monkeypatch):
    monkeypatch.chdir(project)
    assert compose("task=my_task").task.name == "my_task"


def _train(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ENCODERLAB_CONFIG_PATH")} | env
    return subprocess.run([CLI, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def test_config_dir_flag_and_env_var_through_the_cli(project, tmp_path):
    p = _train(["--config-dir", str(project / "conf"), "task=my_task", "model=bert_tiny", "--cfg", "job"], Path.cwd())
    assert p.returncode == 0, p.stderr[-3000:]
    assert "name: my_task" in p.stdout and "num_hidden_layers: 3" in p.stdout

    p = _train(["task=my_task", "--cfg", "job"], Path.cwd(), ENCODERLAB_CONFIG_PATH=str(tmp_path / "typo"))
    assert p.returncode == 2
    assert p.stderr.strip() == f"encoderlab: error: ENCODERLAB_CONFIG_PATH: no folder {tmp_path / 'typo'} " + (
        f"(give existing config dirs, separated by '{os.pathsep}')"
    )


def test_every_package_of_the_source_tree_is_in_the_build():
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


@pytest.mark.slow
def test_the_wheel_runs_from_an_empty_folder(tmp_path):
    """Build the wheel, install it (not editable) into a fresh venv whose dependencies come from this one, and
    run from a folder with nothing in it: the default config, a packaged experiment, a user's task, the report."""
    started = time.time()
    src = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("src", "conf", "experiments"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR", "ENCODERLAB_CONF")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env |= {"ENCODERLAB_CACHE": str(tmp_path / "cache")}

    def run(*cmd, cwd=tmp_path, ok=True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert not ok or p.returncode == 0, f"{cmd}: exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
        return p

    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src)
    (wheel,) = (tmp_path / "dist").glob("encoderlab-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    purelib = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # the dependencies: this environment's site-packages (a path entry, so its editable encoderlab is not loaded)
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(*pip, "--python", py, "install", "--no-deps", wheel)

    where = run(py, "-c", "import encoderlab, encoderlab.cli.train as t; print(encoderlab.__file__); print(t.CONF_DIR)")
    module, conf = where.stdout.split()
    assert Path(module).is_relative_to(venv) and Path(conf) == Path(module).parent / "conf", where.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    bin_ = venv / "bin"
    p = run(bin_ / "encoderlab-train", "--cfg", "job", cwd=empty)
    assert "name: rotten_tomatoes" in p.stdout and "name: minilm_l6" in p.stdout
    p = run(bin_ / "encoderlab-train", "experiment=demo", "--cfg", "job", cwd=empty)
    assert "experiment_name: demo" in p.stdout

    run(bin_ / "encoderlab-init", "proj", cwd=empty)
    proj = empty / "proj"
    p = run(bin_ / "encoderlab-train", *TINY, "task=my_task", f"hydra.run.dir={tmp_path / 'run'}", cwd=proj)
    assert "encoderlab: my_task / bert_tiny / full: test accuracy = " in p.stdout
    assert (tmp_path / "run/summary.json").exists() and (tmp_path / "run/hf/model.safetensors").exists()

    p = run(bin_ / "encoderlab-report", "--help", cwd=empty)
    assert "usage: encoderlab-report" in p.stdout
    assert sorted(os.listdir(empty)) == ["proj"]  # nothing written outside the run dir and the project
    print(f"wheel test: {time.time() - started:.0f}s")

"""docs/RESULTS.md rendered from stored runs: deterministic, checked, never typed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoderlab.cli.report import main
from encoderlab.report.store import read_records

from .factory import write_run

REPO = Path(__file__).resolve().parents[2]
CLAIM = """claims:
  - id: fine_tuning_beats_features
    key: finetune
    a: frozen
    b: full
    metric: test/accuracy
    direction: higher
    published: sun2019_feat_vs_fit
"""


@pytest.fixture()
def project(tmp_path, capsys):
    """experiments/ with a measured study and an unmeasured one, results/ with the study's stored runs."""
    experiments = tmp_path / "experiments"
    (experiments / "paper").mkdir(parents=True)
    (experiments / "study.yaml").write_text(
        "# @package _global_\n# a comment paragraph the document does not use\nexperiment_name: freezing_study\n"
        + CLAIM
        + "notes: >-\n  One epoch on a subset.\n"
    )
    (experiments / "paper" / "unmeasured.yaml").write_text("experiment_name: unmeasured\n")
    runs = tmp_path / "multirun"
    for seed, (frozen, full) in enumerate([(0.70, 0.80), (0.74, 0.85), (0.72, 0.81)], start=1):
        write_run(runs / f"a{seed}", strategy="frozen", seed=seed, test={"accuracy": frozen})
        write_run(runs / f"b{seed}", strategy="full", seed=seed, test={"accuracy": full})
    results = tmp_path / "results"
    assert main([str(runs), "--store", str(results)]) == 0
    capsys.readouterr()
    return tmp_path


def render(project, *flags):
    out = project / "docs" / "RESULTS.md"
    args = ["--results-doc", str(project / "results"), "--out", str(out), "--experiments", str(project / "experiments")]
    return main([*args, *flags]), out


def test_document_renders_claims_verdicts_published_and_commands(project):
    code, out = render(project)

    text = out.read_text()
    assert code == 0
    assert text.index("## paper/unmeasured") < text.index("## study")  # name order
    study = text[text.index("## study") :]
    assert "encoderlab-train -m experiment=study" in study and "encoderlab-report multirun/freezing_study" in study
    assert "Notes: One epoch on a subset." in study and "comment paragraph" not in text
    assert "| finetune=frozen | 3 | 72.00 \u00b1 2.00 | [67.03, 76.97] |" in study
    assert "**holds**" in study and "+10.00" in study and "Stored runs: 3" not in study and "Stored runs: 6" in study
    assert "Sun et al. 2019" in study and "Table 6" in study
    unmeasured = text[text.index("## paper/unmeasured") : text.index("## study")]
    assert "No stored runs." in unmeasured and "encoderlab-train -m experiment=paper/unmeasured" in unmeasured


def test_rendering_is_deterministic_and_check_passes_on_a_fresh_render(project):
    _, out = render(project)
    first = out.read_bytes()
    render(project)

    assert out.read_bytes() == first
    assert render(project, "--check")[0] == 0


def test_check_fails_after_a_hand_edit_and_writes_nothing(project, capsys):
    _, out = render(project)
    out.write_text(out.read_text().replace("**holds**", "**holds clearly**"))
    edited = out.read_bytes()

    code, _ = render(project, "--check")

    assert code == 1 and out.read_bytes() == edited
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from a fresh render" in err


def test_check_fails_when_a_record_changes_without_re_rendering(project, capsys):
    render(project)
    path = project / "results" / "freezing_study" / "runs.jsonl"
    records = read_records(path)
    records[0]["metrics"]["test/accuracy"] += 0.01
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    assert render(project, "--check")[0] == 1
    assert "differs from a fresh render" in capsys.readouterr().err


def test_a_note_may_not_contradict_the_computed_verdict(project, capsys):
    study = project / "experiments" / "study.yaml"
    study.write_text(study.read_text().replace("One epoch on a subset.", "The claim is not resolved at this budget."))

    code, _ = render(project)

    assert code == 1
    err = capsys.readouterr().err
    assert "notes say 'not resolved'" in err and "holds" in err


def test_readme_block_is_rendered_between_the_markers_and_checked(project, capsys):
    readme = project / "README.md"
    readme.write_text("# x\n\n<!-- results:begin -->\n<!-- results:end -->\n\nmore\n")

    assert render(project, "--readme", str(readme))[0] == 0
    text = readme.read_text()
    block = text[text.index("<!-- results:begin -->") : text.index("<!-- results:end -->")]
    assert "`study` fine_tuning_beats_features" in block and "**holds** (n=3)" in block
    assert text.endswith("<!-- results:end -->\n\nmore\n")
    assert render(project, "--readme", str(readme), "--check")[0] == 0

    readme.write_text(text.replace("**holds**", "**met**"))
    assert render(project, "--readme", str(readme), "--check")[0] == 1


def test_readme_without_markers_is_an_error_naming_the_flag(project, capsys):
    readme = project / "README.md"
    readme.write_text("# no markers\n")

    assert render(project, "--readme", str(readme))[0] == 2
    assert capsys.readouterr().err.startswith("encoderlab-report: error: --readme")


def test_benchmark_results_render_from_their_claims_file(project):
    parity = project / "results" / "parity"
    parity.mkdir()
    (parity / "claims.yaml").write_text(
        "claims:\n  - {id: same, key: side, a: hf, b: ours, metric: test/accuracy, direction: equal, margin: 0.01}\n"
        "command: python benchmarks/parity.py --store results/\nnotes: Same recipe on both sides.\n"
    )
    lines = []
    for seed in range(1, 4):
        for side, acc in (("hf", 0.75), ("ours", 0.75 + 0.001 * seed)):
            rec = {"run_id": f"parity/{side}{seed}", "experiment": "parity", "overrides": {"side": side}}
            lines.append(json.dumps(rec | {"seed": seed, "status": "finished", "metrics": {"test/accuracy": acc}}))
    (parity / "runs.jsonl").write_text("\n".join(lines) + "\n")

    code, out = render(project)

    text = out.read_text()
    assert code == 0 and "## parity" in text
    section = text[text.index("## parity") :]
    assert "python benchmarks/parity.py --store results/" in section and "**holds**" in section


def test_a_benchmark_without_claims_shows_the_metrics_its_file_names(project):
    bench = project / "results" / "serving"
    bench.mkdir()
    (bench / "claims.yaml").write_text("claims: []\nmetrics: [samples_per_second, test/accuracy]\n")
    lines = []
    for side, rate in (("onnx", 123.4), ("torch", 61.7)):
        rec = {"run_id": f"serving/{side}", "experiment": "serving", "overrides": {"side": side}, "status": "finished"}
        metrics = {"samples_per_second": rate, "test/accuracy": 0.81, "speedup": rate / 61.7}
        lines.append(json.dumps(rec | {"metrics": metrics, "primary_metric": "speedup"}))
    (bench / "runs.jsonl").write_text("\n".join(lines) + "\n")

    code, out = render(project)

    section = out.read_text().split("## serving")[1]
    header = next(line for line in section.splitlines() if line.startswith("| group"))
    assert code == 0 and "samples_per_second" in header and "test/accuracy" in header, header
    assert "speedup" not in header and "| side=onnx | 1 | 123.4" in section, section


def test_the_repository_results_document_is_current():
    """docs/RESULTS.md is rendered from results/ and the experiments' claims: re-render it after storing runs."""
    args = ["--results-doc", str(REPO / "results"), "--out", str(REPO / "docs" / "RESULTS.md"), "--check"]
    readme = REPO / "README.md"
    if "<!-- results:begin -->" in readme.read_text():
        args += ["--readme", str(readme)]
    assert main(args) == 0


def test_a_published_block_shows_the_paper_and_our_distance_to_it(project):
    (project / "experiments" / "paper" / "unmeasured.yaml").write_text(
        "experiment_name: freezing_study\npublished:\n  metric: accuracy\n  value: 0.8\n  tolerance: 0.01\n"
        "  source: 'sun2019_feat_vs_fit: the paper number'\n"
    )

    code, out = render(project)

    text = out.read_text()
    section = text[text.index("## paper/unmeasured") : text.index("## study")]
    assert code == 0 and "Published (sun2019_feat_vs_fit): Sun et al. 2019" in section
    assert (
        "mean \u2212 published (95%)" in section
        and "| finetune=full | 3 | 82.00 \u00b1 2.65 | [75.43, 88.57] | +2.00" in section
    )

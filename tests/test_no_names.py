"""Knowledge stays where it belongs: the runner, the module, the heads, the freezing and deploy/ call the hooks of a
kind (``encoderlab.kinds``), a strategy (``encoderlab.strategies``) or a model family (``encoderlab.models.families``)
and never compare against one's name. The names come from the registries and config choices, so a kind or strategy
added later is covered without editing this file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "encoderlab"
NAME_FREE = ["runner.py", "models/module.py", "models/heads.py", "training/freezing.py", "deploy/*.py"]
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def all_names() -> set[str]:
    from encoderlab import names
    from encoderlab.models.families import FAMILY_LOOPS
    from encoderlab.strategies import strategy_names

    return {*names.TASK_KINDS, *names.MULTITASK_KINDS, *strategy_names(), *names.MODEL_FAMILIES, *FAMILY_LOOPS}


def _strings(node: ast.AST) -> list[str]:
    """The string constants a comparison operand is or holds (``"a"``, ``("a", "b")``, ``["a"]``, ``{"a"}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for elt in node.elts for s in _strings(elt)]
    return []


def name_comparisons(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of every ``==``, ``!=``, ``in`` or ``not in`` with a name among its operands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and any(isinstance(op, COMPARISONS) for op in node.ops):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, s) for s in _strings(operand) if s in names]
    return found


def name_free_files() -> list[Path]:
    return sorted({f for pattern in NAME_FREE for f in SRC.glob(pattern)})


def test_the_runner_module_heads_freezing_and_deploy_compare_against_no_kind_strategy_or_family_name():
    names = all_names()
    found = {
        f"{f.relative_to(SRC)}:{line}": name
        for f in name_free_files()
        for line, name in name_comparisons(f.read_text(), names)
    }
    assert not found, f"move these into the kind's, strategy's or family's own hooks: {found}"


def test_deploy_holds_no_kind_name_at_all():
    from encoderlab import names

    kinds = set(names.TASK_KINDS)
    found = {
        f"{f.relative_to(SRC)}:{node.lineno}": node.value
        for f in sorted(SRC.glob("deploy/*.py"))
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.Constant) and node.value in kinds
    }
    assert not found, f"deploy/ reads a kind's serving (Kind.serving), it names no kind: {found}"


@pytest.mark.parametrize(
    ("source", "hits"),
    [
        ('if run.finetune.strategy == "distill":\n    pass\n', [(1, "distill")]),
        ('x = kind != "multitask"\n', [(1, "multitask")]),
        (
            'ok = meta["kind"] in ("token_classification", "question_answering")\n',
            [(1, "token_classification"), (1, "question_answering")],
        ),
        ('ok = s in ["top_k"] or s not in {"lora"}\n', [(1, "top_k"), (1, "lora")]),
        ('"tfidf_logreg" == family\n', [(1, "tfidf_logreg")]),
        ('folder / "encoder"\nd = {"lora": 1}\nx = y == "linear"\n', []),  # a path, a key, another name: no
    ],
)
def test_the_check_finds_each_form_of_comparison(source, hits):
    names = {"distill", "multitask", "token_classification", "question_answering", "top_k", "lora", "tfidf_logreg"}
    assert name_comparisons(source, names | {"encoder"}) == hits


def test_the_names_come_from_the_registries_and_include_a_registered_strategy():
    from encoderlab.strategies import _REGISTERED, register, strategy_names
    from encoderlab.strategies.base import Strategy

    class Probe(Strategy):
        name = "probe_for_names"

    register(Probe())
    try:
        assert "probe_for_names" in strategy_names() and "probe_for_names" in all_names()
        assert {"lora", "multitask", "question_answering", "tfidf_logreg"} <= all_names()
    finally:
        _REGISTERED.pop("probe_for_names")

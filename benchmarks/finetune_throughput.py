"""Fine-tuning throughput: encoderlab vs the Hugging Face Trainer and a plain PyTorch loop, in one process.

Same model (MiniLM-L6), data (Rotten Tomatoes train split), batch size, gradient clipping (1.0) and thread count
for every side; each side trains for the same number of optimizer steps with evaluation, logging and checkpoints
off, and is timed by wall clock around its whole training call. The sides (in ``_finetune_sides.py`` beside it):

* HF Trainer: padding to 128, dynamic padding (its best fp32 setting), dynamic padding in bf16 (its fused AdamW);
* encoderlab: the Lightning run as ``encoderlab-train`` builds it (length-bucketed batches, dynamic padding), in
  fp32, bf16-mixed and bf16-true (bf16 weights, fp32 master weights in the optimizer: no autocast casts);
* plain loop: encoderlab's model, bucketed batches, collator, parameter groups, optimizer and schedule, trained by
  a bare PyTorch loop (no Lightning): encoderlab's distance to it is the framework's overhead;
* evaluation: encoderlab's validation pass (length-sorted batches, inference mode) vs ``Trainer.evaluate()``.

Every side runs once per round, over ``--rounds`` rounds (default 3) in alternating order (forward, then
backward, ...), so that drift in the machine's speed hits all alike. Printed per side and round: samples/s, model
FLOP/s and MFU (model FLOP utilisation: the model's FLOPs over the matmul peak measured here, 2048^2 matmuls at the
same thread count and precision); then each side's median over the rounds, and the ratios the speed goals are
about, each the median of the rounds' own ratios (with their min and max). FLOPs count non-padding tokens only:
6 * N * tokens + 12 * layers * hidden * sum(length^2) (attention scores and their weighted sum, forward and
backward), N = the parameters of the transformer layers (no embeddings, pooler or head). Never run it beside other
work: a busy machine makes steps several times slower.

    python benchmarks/finetune_throughput.py --steps 30 --threads 2
    python benchmarks/finetune_throughput.py --steps 30 --threads 2 --store results/  # keep the rows
    python benchmarks/finetune_throughput.py --steps 2 --batch 4 --no-bf16 --max-train-samples 32 --rounds 1  # smoke
    python benchmarks/finetune_throughput.py --overhead-only --steps 30 --threads 2 --rounds 12 --store results/

``--store DIR`` keeps one line per side and round in ``DIR/finetune_throughput/runs.jsonl`` (the round as its seed;
the evaluation passes as sides of their own), with the machine that measured it: samples/s, MFU, and samples/s
over the same round's HF Trainer (dynamic padding) and plain loop, which ``results/finetune_throughput/claims.yaml``
compares. The bf16 rows run only where bf16 is fast (``precision=auto``'s detection, ``ENCODERLAB_FAST_BF16``
included); elsewhere the script says ``bf16 rows skipped:`` and why. Each side announces itself before it starts.
``--overhead-only`` runs encoderlab and its plain loop alone (no HF Trainer, frozen or evaluation sides), so that
the many rounds a 5% equivalence needs on a noisy machine take minutes; ``--store`` keeps those in
``DIR/finetune_overhead/runs.jsonl``, claimed by ``results/finetune_overhead/claims.yaml``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402
from _finetune_sides import WARM, Result, encoderlab_side, hf_side, matmul_peak, plain_side  # noqa: E402


def skip_bf16(asked: bool, device: str) -> bool:
    """True where the bf16 rows are left out (``--no-bf16``, or bf16 not fast here); says so in one line."""
    from encoderlab.training.precision import bf16_rows

    fast, why = (False, "--no-bf16") if asked else bf16_rows(device)
    if not fast:
        print(f"bf16 rows skipped: {why}", flush=True)
    return not fast


@dataclass(frozen=True)
class Side:
    """One timed side: the row it prints, the ``side=`` and ``precision=`` it is stored under, and its call."""

    name: str
    side: str  # hf_trainer (dynamic padding), encoderlab, plain_loop, ...: the claims' arms, one per precision
    precision: str  # 32-true | bf16-mixed | bf16-true
    steps: int
    run: Callable[[], Result]


def plan(args, no_bf16: bool) -> list[Side]:
    """Every side of one round, in the order the first round runs them."""
    dev, ev = args.device, not args.no_eval
    n = args.max_train_samples
    subset = [f"task.max_train_samples={n if n is not None else 'null'}"]
    if args.max_eval_samples is not None:
        subset.append(f"task.max_eval_samples={args.max_eval_samples}")
    s, b, m = args.steps, args.batch, args.max_eval_samples
    if args.overhead_only:  # encoderlab and its plain loop alone, per precision, without evaluation
        sides = []
        for prec in ["32-true"] if no_bf16 else ["32-true", "bf16-mixed"]:
            p, o = "bf16" if prec.startswith("bf16") else "fp32", [*subset, f"precision={prec}"]
            ours, plain = f"encoderlab, buckets, {p}", f"plain PyTorch loop, {p}"
            sides += [
                Side(ours, "encoderlab", prec, s, partial(encoderlab_side, ours, s, b, o, dev, False)),
                Side(plain, "plain_loop", prec, s, partial(plain_side, plain, s, b, o, dev)),
            ]
        return sides
    name = "HF Trainer, padding to 128"
    sides = [Side(name, "hf_trainer_pad128", "32-true", s, partial(hf_side, name, s, b, True, False, dev, n, m))]
    for bf in [False] if no_bf16 else [False, True]:
        p, prec = ("bf16", "bf16-mixed") if bf else ("fp32", "32-true")
        hf, ours, plain = f"HF Trainer, dynamic padding, {p}", f"encoderlab, buckets, {p}", f"plain PyTorch loop, {p}"
        o = [*subset, f"precision={prec}"]
        sides += [
            Side(hf, "hf_trainer", prec, s, partial(hf_side, hf, s, b, False, bf, dev, n, m, ev)),
            Side(ours, "encoderlab", prec, s, partial(encoderlab_side, ours, s, b, o, dev, ev)),
            Side(plain, "plain_loop", prec, s, partial(plain_side, plain, s, b, o, dev)),
        ]
    if not no_bf16:  # bf16 weights, fp32 master weights in the optimizer: no autocast casts
        name, o = "encoderlab, buckets, bf16-true", [*subset, "precision=bf16-true"]
        run = partial(encoderlab_side, name, s, b, o, dev, ev)
        sides.append(Side(name, "encoderlab_bf16_true", "bf16-true", s, run))  # a side of its own: no plain loop
    if not no_bf16 and dev == "cpu":  # the kernel encoderlab picks on a CPU (model.attn_implementation=auto)
        name = "HF Trainer, dynamic padding, bf16, eager attention"
        run = partial(hf_side, name, s, b, False, True, dev, n, m, False, "eager")
        sides.append(Side(name, "hf_trainer_eager", "bf16-mixed", s, run))
    prec = "32-true" if no_bf16 else "bf16-mixed"
    name, fs = "encoderlab frozen, features encoded once (incl. encoding)", s * args.frozen_steps_factor
    o = [*subset, "finetune=frozen", f"precision={prec}"]
    sides.append(Side(name, "encoderlab_frozen", prec, fs, partial(encoderlab_side, name, fs, b, o, dev)))
    return sides


def spread(values: list[float], fmt: str = ".2f") -> str:
    """`` (rounds LO to HI)`` over several rounds; nothing for one."""
    return f"  (rounds {min(values):{fmt}} to {max(values):{fmt}})" if len(values) > 1 else ""


def stored_rows(sides: list[Side], runs: dict[str, list[Result]], peak: dict[str, float]) -> list[tuple]:
    """Each side's rounds as (side, precision, round, metrics, seconds, steps): samples/s, MFU, and samples/s over
    the same round's HF Trainer (dynamic padding, same fp32/bf16) and plain loop (same precision), which the
    claims compare; the evaluation passes as sides ``<side>_eval``."""
    by_key = {(side.side, side.precision): runs[side.name] for side in sides}
    rows = []
    for side in sides:
        for i, r in enumerate(runs[side.name]):
            m = {"test/samples_per_s": r.samples_per_s}
            if r.steady_samples_per_s:
                m["test/steady_samples_per_s"] = r.steady_samples_per_s
            if r.flops:
                m["test/model_gflops_per_s"] = r.flops / r.seconds / 1e9
                m["test/mfu"] = r.flops / r.seconds / peak[r.precision]
            hf = by_key.get(("hf_trainer", "32-true" if r.precision == "fp32" else "bf16-mixed"))
            if hf:
                m["test/speed_vs_hf_trainer"] = r.samples_per_s / hf[i].samples_per_s
            plain = by_key.get(("plain_loop", side.precision)) if side.side in ("encoderlab", "plain_loop") else None
            if plain:
                m["test/speed_vs_plain_loop"] = r.samples_per_s / plain[i].samples_per_s
                if r.steady_samples_per_s and plain[i].steady_samples_per_s:
                    m["test/steady_speed_vs_plain_loop"] = r.steady_samples_per_s / plain[i].steady_samples_per_s
                if side.side == "encoderlab":  # the printed goal: 1 - encoderlab / plain loop, whole fit call
                    m["test/overhead_vs_plain_loop"] = 1 - m["test/speed_vs_plain_loop"]
            rows.append((side.side, side.precision, i + 1, m, r.seconds, side.steps))
            if r.eval_samples_per_s:
                m = {"test/samples_per_s": r.eval_samples_per_s}
                if hf and hf[i].eval_samples_per_s:
                    m["test/speed_vs_hf_trainer"] = r.eval_samples_per_s / hf[i].eval_samples_per_s
                rows.append((f"{side.side}_eval", side.precision, i + 1, m, None, None))
    return rows


def results_name(args) -> str:
    """Where ``--store`` puts the lines: ``--overhead-only`` is a measurement of its own (fewer sides, more rounds)."""
    return "finetune_overhead" if args.overhead_only else "finetune_throughput"


def store(args, sides: list[Side], runs: dict[str, list[Result]], peak: dict[str, float], argv: list[str]) -> None:
    """One line per side and round in DIR/<results_name>/runs.jsonl (the round as its seed, so that rounds pair as
    seeds do), with the machine that measured it."""
    from encoderlab.errors import EncoderlabError
    from encoderlab.provenance import git_commit, machine_info
    from encoderlab.report.store import benchmark_command, benchmark_record, store_records

    machine = machine_info()
    device = "cpu" if args.device == "cpu" else str(machine["gpu"])
    where = {"device": device, "cpu": machine["cpu"], "threads": str(torch.get_num_threads())}
    setup = {k: getattr(args, k) for k in ("steps", "batch", "rounds", "max_train_samples", "max_eval_samples")}
    setup |= {"frozen_steps_factor": args.frozen_steps_factor, "matmul_peak_flops": peak}
    command = benchmark_command("finetune_throughput.py", argv)
    commit = git_commit(Path(__file__).resolve().parent)
    records = [
        benchmark_record(
            results_name(args),
            {"side": side, "precision": precision, **where},
            seed,
            metrics,
            command=command,
            train_seconds=seconds,
            steps=steps,
            precision=precision,
            machine=machine,
            commit=commit,
            setup=setup,
            primary_metric="test/samples_per_s",  # benchmark_record's default would be the first name, test/mfu
        )
        for side, precision, seed, metrics, seconds, steps in stored_rows(sides, runs, peak)
    ]
    try:
        written = store_records(records, args.store)
    except EncoderlabError as e:
        sys.exit(f"finetune_throughput: {e}")
    for path, (added, replaced) in written.items():
        print(f"stored: {path} ({added} added, {replaced} replaced)", flush=True)


def main(argv: list[str] | None = None) -> dict[str, list[Result]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of every side, sides alternating (at least 1)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows (CPUs without fast bf16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--max-train-samples", type=int, default=None, help="a subset of the training split (smoke tests)")
    ap.add_argument("--max-eval-samples", type=int, default=None, help="a subset of the validation split")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation rows")
    ap.add_argument("--frozen-steps-factor", type=int, default=20, help="the frozen side's steps per full-side step")
    ap.add_argument(
        "--overhead-only",
        action="store_true",
        help="only encoderlab and the plain loop (the framework overhead: many rounds in minutes), no evaluation; "
        "--store keeps them in DIR/finetune_overhead/",
    )
    ap.add_argument("--store", metavar="DIR", help="store each side's rounds in DIR/finetune_throughput/runs.jsonl")
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, not {args.rounds}")
    if args.store and Path(args.store).exists() and not Path(args.store).is_dir():
        ap.error(f"--store {args.store}: not a folder (stored runs go to DIR/finetune_throughput/runs.jsonl)")
    torch.set_num_threads(args.threads)
    dev = args.device
    no_bf16 = skip_bf16(args.no_bf16, dev)
    print("measuring the matmul peak ...", flush=True)
    peak = {"fp32": matmul_peak(torch.float32, dev)}
    if not no_bf16:
        peak["bf16"] = matmul_peak(torch.bfloat16, dev)
    where = f"{torch.get_num_threads()} threads" if dev == "cpu" else torch.cuda.get_device_name()
    print(
        "matmul peak (2048^2, " + where + "): " + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in peak.items()),
        flush=True,
    )

    sides = plan(args, no_bf16)
    runs: dict[str, list[Result]] = {side.name: [] for side in sides}
    for i in range(args.rounds):
        if args.rounds > 1:
            print(f"round {i + 1}/{args.rounds} ({'sides in order' if i % 2 == 0 else 'sides in reverse'})", flush=True)
        for side in sides if i % 2 == 0 else sides[::-1]:
            torch.manual_seed(0)
            r = side.run()
            runs[side.name].append(r)
            mfu = f"{r.flops / r.seconds / peak[r.precision]:6.1%}" if r.flops else "     -"
            gf = f"{r.flops / r.seconds / 1e9:7.1f}" if r.flops else "      -"
            ev_txt = f"   eval {r.eval_samples_per_s:7.1f} samples/s" if r.eval_samples_per_s else ""
            print(f"{r.name:52s} {r.samples_per_s:7.1f} samples/s {gf} GFLOP/s MFU {mfu}{ev_txt}", flush=True)

    def ratios(a: str, b: str, attr: str = "samples_per_s") -> list[float]:
        """Side ``a`` over side ``b``, round by round."""
        return [getattr(x, attr) / getattr(y, attr) for x, y in zip(runs[a], runs[b], strict=True)]

    def mfus(name: str, p: str) -> float:
        return statistics.median(r.flops / r.seconds / peak[p] for r in runs[name])

    if args.rounds > 1:
        print(f"\nsamples/s, median of {args.rounds} rounds (sides alternating):")
        for name, results in runs.items():
            values = [r.samples_per_s for r in results]
            print(f"  {name:60s} {statistics.median(values):7.1f}{spread(values, '.1f')}")
    base_name = "HF Trainer, dynamic padding, fp32"
    if base_name in runs:
        base = statistics.median(r.samples_per_s for r in runs[base_name])
        rounds = f"median of {args.rounds} rounds, " if args.rounds > 1 else ""
        print(f"\nratios against 'HF Trainer, dynamic padding' ({base:.1f} samples/s), {rounds}same process, {where}:")
        for name in runs:
            values = ratios(name, base_name)
            print(f"  {name:60s} x{statistics.median(values):5.2f}{spread(values)}")
    print("\nspeed goals (same precision):")
    for p in ("fp32",) if no_bf16 else ("fp32", "bf16"):
        ours, hf, plain = f"encoderlab, buckets, {p}", f"HF Trainer, dynamic padding, {p}", f"plain PyTorch loop, {p}"
        if hf in runs:
            speed = ratios(ours, hf)
            print(
                f"  {p}: encoderlab / HF Trainer           x{statistics.median(speed):5.2f}  (goal >= 1.25)"
                + spread(speed)
            )
        overhead = [1 - x for x in ratios(ours, plain)]
        print(
            f"  {p}: framework overhead vs plain loop  {statistics.median(overhead):6.1%}  (goal <= 5%; whole fit "
            f"call){spread(overhead, '.1%')}"
        )
        if all(r.steady_samples_per_s for r in runs[ours] + runs[plain]):
            steady = [1 - x for x in ratios(ours, plain, "steady_samples_per_s")]
            print(
                f"  {p}: per-step overhead vs plain loop   {statistics.median(steady):6.1%}  (steps after the first "
                f"{WARM}, no set-up){spread(steady, '.1%')}"
            )
        hf_mfu = f", HF Trainer {mfus(hf, p):.1%}" if hf in runs else ""
        print(f"  {p}: MFU encoderlab {mfus(ours, p):.1%}, plain loop {mfus(plain, p):.1%}{hf_mfu}")
        if p == "bf16" and "encoderlab, buckets, bf16-true" in runs:
            true = ratios("encoderlab, buckets, bf16-true", hf)
            print(
                f"  bf16: encoderlab precision=bf16-true / HF Trainer bf16  x{statistics.median(true):5.2f}"
                + spread(true)
            )
        if hf in runs and all(r.eval_samples_per_s for r in runs[ours] + runs[hf]):
            ev = ratios(ours, hf, "eval_samples_per_s")
            ev_ours = statistics.median(r.eval_samples_per_s for r in runs[ours])
            ev_hf = statistics.median(r.eval_samples_per_s for r in runs[hf])
            print(
                f"  {p}: evaluation samples/s encoderlab {ev_ours:.1f}, HF Trainer.evaluate() "
                f"{ev_hf:.1f}: x{statistics.median(ev):.2f}{spread(ev)}"
            )
    if args.store:
        store(args, sides, runs, peak, sys.argv[1:] if argv is None else argv)
    return runs


if __name__ == "__main__":
    main()

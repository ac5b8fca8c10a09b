"""``encoderlab-init DIR``: start a project of your own: a task reading a CSV file, the file, one experiment, a README.

Run from DIR, ``encoderlab-train`` finds DIR/conf by itself (encoderlab.config.search_path); from elsewhere, add
``--config-dir DIR/conf`` or set ENCODERLAB_CONFIG_PATH. Existing files are never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TASK = """\
# A task of your own: a CSV file with a text column and a label column. Paths are relative to the folder you run
# encoderlab-train from (this project's folder). Every key: encoderlab's conf/task/csv_example.yaml and
# src/encoderlab/config/schema.py (TaskConfig). A single train file is split into validation/test (seeded,
# stratified) when those are null.
name: my_task
kind: sequence_classification
source: files
data_files:
  train: data/my_task.csv
validation_split: null
test_split: null
validation_size: 0.2
test_size: 0.2
text_fields: [text]
label_field: label
label_names: [billing, technical]
max_seq_length: 64
metrics: [accuracy, f1_macro]
primary_metric: accuracy
"""

EXPERIMENT = """\
# @package _global_
# Full fine-tuning vs a frozen encoder with a linear probe on my_task, two seeds each (4 jobs):
#   encoderlab-train -m experiment=my_experiment
#   encoderlab-report multirun/my_experiment
# An experiment is a diff: it picks options of the groups and changes only the keys that differ.
defaults:
  - override /task: my_task

experiment_name: my_experiment

trainer:
  max_epochs: 3
optimizer:
  lr: 1e-4
  head_lr: 1e-2

hydra:
  sweeper:
    params:
      finetune: full,frozen
      seed: 1,2
"""

DATA = """\
text,label
why did my subscription price go up,billing
please send last year's invoices,billing
how much does the team plan cost,billing
the invoice shows the wrong amount,billing
notifications arrive twice,technical
the api returns a timeout,technical
my password reset link is broken,technical
the calendar shows the wrong time zone,technical
the trial ended and I was charged without notice,billing
I paid but my account says unpaid,billing
my card was billed after I cancelled,billing
please refund my last invoice,billing
can I get a refund for the annual plan,billing
dark mode makes the text unreadable,technical
my bank shows an unknown charge from you,billing
I cannot log in after the update,technical
switch me to monthly billing please,billing
remove the late fee from my bill,billing
the desktop app will not start,technical
I lost my files after the last update,technical
the app crashes when I open settings,technical
update the billing address on my invoices,billing
the export button does nothing,technical
error 500 when I upload a file,technical
search returns no results at all,technical
my changes are not saved,technical
the page keeps loading forever,technical
I need a receipt for my order,billing
the discount code was not applied,billing
the payment failed but money left my account,billing
the app is very slow on my laptop,technical
the login page shows a blank screen,technical
I was charged twice this month,billing
how do I change my payment method,billing
images do not load in the editor,technical
sync stopped working on my phone,technical
cancel my plan and stop the payments,billing
two factor codes are rejected,technical
attachments fail to download,technical
I was overcharged for two seats,billing
"""

README = """\
# My encoderlab project

    conf/task/my_task.yaml               a task: which file, which columns, which labels, which metrics
    conf/experiment/my_experiment.yaml   a study: full fine-tuning vs a frozen encoder, two seeds each
    data/my_task.csv                     40 support tickets labelled billing or technical (replace with yours)

Run from this folder (encoderlab-train adds ./conf to encoderlab's own configs when it holds task/, model/,
experiment/, ... folders):

    encoderlab-train task=my_task                      # one run with the default encoder (MiniLM-L6)
    encoderlab-train task=my_task model=bert_tiny      # a tiny random-init BERT: a quick check of the set-up
    encoderlab-train -m experiment=my_experiment       # the study (multirun/my_experiment)
    encoderlab-report multirun/my_experiment           # its table and plots

From another folder, point at this one (the data path in the task is relative, so set it too):

    encoderlab-train --config-dir PATH/conf task=my_task task.data_files.train=PATH/data/my_task.csv
    ENCODERLAB_CONFIG_PATH=PATH/conf encoderlab-train -m experiment=my_experiment

Your files come before encoderlab's: a new name adds an option (task=my_task), a packaged name
(conf/model/bert_tiny.yaml) replaces encoderlab's option of that name. Add models under conf/model/,
experiments under conf/experiment/; `encoderlab-train --help` lists every group and option.
"""

FILES = {
    "conf/task/my_task.yaml": TASK,
    "conf/experiment/my_experiment.yaml": EXPERIMENT,
    "data/my_task.csv": DATA,
    "README.md": README,
}


def write_project(root: Path) -> list[Path]:
    """Writes FILES under root; raises FileExistsError naming the first file already there (and writes nothing)."""
    targets = [root / name for name in FILES]
    for t in targets:
        if t.exists():
            raise FileExistsError(t)
    for t, text in zip(targets, FILES.values(), strict=True):
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(text)
    return targets


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="encoderlab-init",
        description="Write a starter project: a task reading a CSV file, the file, one experiment, a README.",
    )
    p.add_argument("dir", metavar="DIR", help="the project folder (created if missing)")
    args = p.parse_args(argv)
    root = Path(args.dir)
    try:
        written = write_project(root)
    except FileExistsError as e:
        print(f"encoderlab-init: error: {e} exists; nothing written (choose an empty or new DIR)", file=sys.stderr)
        sys.exit(2)
    print(f"encoderlab-init: wrote {len(written)} files under {root}/ (see {root / 'README.md'})")
    for t in written:
        print(f"  {t}")


if __name__ == "__main__":
    main()

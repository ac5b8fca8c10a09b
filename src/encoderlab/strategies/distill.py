"""``finetune=distill`` (Hinton et al. 2015; DistilBERT): a student learns from a finished run's soft targets.

Before the data is read the teacher run is loaded (a wrong teacher fails first) and, with
``distill.student_layers``, the student becomes the teacher's network with those layers only; after the kind has
built the student, the teacher's logits on the training split join the data (computed once, cached); the student
trains with :func:`~encoderlab.models.distill.distillation_loss`. The code is in :mod:`encoderlab.models.distill`.
"""

from __future__ import annotations

from encoderlab.strategies.base import Strategy


class Distill(Strategy):
    name = "distill"
    sections = ("distill",)  # distill.*: a run's hash stays what it was before distillation existed

    def configure(self, run, summary):
        from encoderlab.models.distill import load_teacher, student_run

        teacher = load_teacher(run)  # a wrong teacher fails here, before any data is read
        run = student_run(run, teacher)  # student_layers: the student starts as the teacher's network
        summary["model"] = run.model.name
        return run, teacher

    def extra_data(self, run, prepared, state, summary):
        import time

        from encoderlab.data.cache import cache_root
        from encoderlab.models.distill import attach_teacher_logits, student_layer_indices

        teacher = state
        t_teacher = time.perf_counter()
        prepared = attach_teacher_logits(run, prepared, teacher, cache_root(run.paths.cache_dir))
        seconds = time.perf_counter() - t_teacher  # ~0 when an earlier run computed the logits
        layers = student_layer_indices(run.distill.student_layers, teacher.num_layers)
        summary["distill"] = teacher.describe(run, layers) | {"teacher_seconds": round(seconds, 2)}
        return prepared, seconds

    def adapt(self, network, run):
        from encoderlab.models.distill import keep_layers, student_layer_indices

        # the student; with student_layers, model.path is the teacher's hf/
        layers = student_layer_indices(run.distill.student_layers, network.config.num_hidden_layers)
        return keep_layers(network, layers) if layers is not None else network

    def module_class(self, cls, run):
        from encoderlab.models.distill import DistillSequenceModule

        return DistillSequenceModule


STRATEGY = Distill()

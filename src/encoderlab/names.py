"""Every user-facing name, once: the schema's checks (config/schema.py) and the builders that select by name
(kinds.py, training/, models/heads.py, metrics/) read these lists; tests/config/test_names.py checks that each
builder has exactly these names. No torch import: the schema loads this before anything heavy.
"""

from __future__ import annotations

TASK_KINDS = (
    "sequence_classification",
    "sequence_regression",
    "token_classification",
    "question_answering",
    "pretraining",
    "multitask",
)
# the kinds a multitask run can train together on one encoder
MULTITASK_KINDS = ("sequence_classification", "sequence_regression", "token_classification")
# multitask: which task the next train batch comes from
SAMPLINGS = ("proportional", "temperature", "round_robin")
SOURCES = ("package", "hub", "files")
# encoder: a BERT-style network trained with Lightning; tfidf_logreg: a scikit-learn baseline (no Lightning)
MODEL_FAMILIES = ("encoder", "tfidf_logreg")
FILE_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "conll", "txt", "squad")
OBJECTIVES = ("none", "nsp", "sop", "electra")
# objective none/electra: how text becomes examples (run_mlm's group_texts, RoBERTa FULL-SENTENCES, DOC-SENTENCES)
PACKINGS = ("blocks", "full_sentences", "documents")
# from-scratch architectures: BERT (post-LayerNorm) or RoBERTa-PreLayerNorm (pre-LN blocks train at higher LRs)
ARCHITECTURES = ("bert", "roberta_prelayernorm")
STRATEGIES = ("full", "frozen", "feature_based", "top_k", "gradual_unfreeze", "lora", "distill", "setfit")
# distill.student_layers by name (or an explicit list of teacher layer indices)
STUDENT_LAYERS = ("every_other",)
POOLINGS = ("cls", "mean", "pooler")
# model.attn_implementation: auto is eager for bf16 without CUDA, transformers' default (sdpa) otherwise
ATTENTION = ("auto", "eager", "sdpa")
FEATURE_LAYERS = (
    "embeddings",
    "last",
    "second_to_last",
    "concat_last4",
    "weighted_sum_last4",
    "weighted_sum_all",
)
HEADS = ("linear", "mlp", "bilstm")
OPTIMIZERS = ("adamw", "adamw_bert")
LAYER_DECAY_TOPS = ("base", "decayed")
SCHEDULERS = ("linear", "bert_linear", "cosine", "constant", "slanted_triangular", "polynomial", "inverse_sqrt")
SCHEDULE_CLOCKS = ("steps", "time", "flops")  # scheduler.clock: what a schedule's progress is measured in
PADDINGS = ("dynamic", "max_length")
LONG_TEXT = ("head", "tail", "head_tail", "chunks")
CHUNK_POOLINGS = ("mean", "max")
METRICS = {
    "sequence_classification": ("accuracy", "f1_macro", "matthews_correlation", "f1"),
    "sequence_regression": ("pearson", "spearman", "mse"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
    "question_answering": ("exact_match", "f1"),
    "pretraining": ("mlm_accuracy", "mlm_loss", "perplexity", "sentence_accuracy", "rtd_accuracy", "rtd_loss"),
    # the mean over the sub-tasks of each one's primary metric (each sub-task's own metrics are logged too)
    "multitask": ("mean",),
}
LOWER_IS_BETTER = ("mse", "mlm_loss", "perplexity", "rtd_loss")
RESUME_MODES = ("auto", "never")
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")

"""The one tidy table schema: the columns of runs/<study>/results.csv and results_per_class.csv.

Every job's result lands as one row of RESULTS_COLUMNS; every (job, split, class) as one row of
PER_CLASS_COLUMNS. F1 values are percentages. Both tables are rebuilt from the per-job result files
(runs/<study>/jobs/<job_id>/result.json) at any time, so neither is ever the only copy of a result.
"""

# The paper's four factors keep these columns in every table, so tables of any harness version read alike.
# A study that varies any other config key (a [grid] or [[variant]] key such as "student.hidden") gets one
# more column per such factor, named by the dotted key and placed right after these four, holding each
# run's level as its config holds it (64, 0.001, "crnn"); harness.study.table.results_columns.
FACTOR_COLUMNS: tuple[str, ...] = ("curriculum", "pseudolabels", "masking", "augmentation")

RESULTS_COLUMNS: tuple[str, ...] = (
    "study",
    "job_id",
    "variant",
    *FACTOR_COLUMNS,
    "lambda1",
    "lambda2",
    "seed",  # in a design of seed streams, the run's number; then seed_teacher, seed_init, seed_order and
    # seed_augment follow it (harness.streams; harness.study.table.results_columns)
    "profile",
    "val_f1",  # macro event-based F1 on validation (%), best epoch
    "test_f1",  # macro event-based F1 on test (%), best epoch's weights
    "val_segment_f1",  # macro segment-based F1 (1 s) on validation (%)
    "test_segment_f1",
    "val_psds1",  # PSDS1 (DCASE 2021-2024 Task 4 parameters) on validation (%), sed_scores_eval
    "val_psds2",
    "test_psds1",
    "test_psds2",
    "val_intersection_f1",  # intersection-based F1 at threshold 0.5 (%)
    "test_intersection_f1",
    "val_collar_f1",  # collar-based F1 at threshold 0.5 (%), sed_scores_eval
    "test_collar_f1",
    "best_epoch",
    "steps",
    "wall_seconds",
    "params",  # the student's trainable parameters
    "macs_per_clip",  # its multiply-accumulates per 10-s clip (matrix products and pooling; harness.model.size)
    "train_kwh",  # energy of training (kWh, codecarbon; empty: not measured)
    "eval_kwh",  # energy of the final evaluation on validation and test (kWh)
    "energy_estimate",  # codecarbon's power source per device, e.g. "CPU(Cpu Load) TDP 8 W; RAM()"
    # Provenance (harness.records.Provenance): what a result was computed on, and what can move its last bits.
    "config_key",  # digest of the resolved method config (run-only fields and seed left out)
    "bundle_key",  # content key of the shared stages: data, features, teacher
    "data_digest",  # content digest of the data (TSV bytes + audio)
    "threads",  # torch threads of the job
    "device",
    "cpu",  # CPU model, torch's CPU capability and the instruction sets that pick its kernels
    "torch_version",
    "cuda_version",
    "harness_version",
    "git_commit",
    "sed_scores_eval_version",  # published PSDS values moved between metric package versions
)

# A plugin's metric (harness.plugins.MetricSpec) gets two columns, val_<name> and test_<name>, after this one.
LAST_METRIC_COLUMN = "test_collar_f1"

# Columns that must agree between the runs of one table row (harness.report refuses to mix them).
ROW_IDENTITY_COLUMNS: tuple[str, ...] = ("config_key", "bundle_key")

PER_CLASS_COLUMNS: tuple[str, ...] = (
    "study",
    "job_id",
    "variant",
    "seed",
    "split",  # "validation" or "test"
    "event_label",
    "f1",  # event-based F1 of the class (%)
)

# Per-epoch log of a job: runs/<study>/jobs/<job_id>/metrics.csv
EPOCH_COLUMNS: tuple[str, ...] = (
    "epoch",  # 1-based
    "generation",  # 1-based curriculum generation
    "step",  # optimiser steps done at the end of the epoch
    "n_train",  # clips in use for training during the epoch
    "n_unlabeled",  # of which pseudolabeled clips from U
    "loss_weak",  # mean J_w over the epoch's batches
    "loss_strong",  # mean J_s
    "loss_unlabeled",  # mean J_u
    "loss_total",
    "val_f1",  # macro event-based F1 on validation (%)
    "val_segment_f1",
    "seconds",  # wall time of the epoch, validation included
)

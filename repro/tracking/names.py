"""Every name repro writes into MLflow and Optuna, defined once: tags, metrics, tables, trial
attributes, and builders for the parameterised ones.

The code never spells one of these strings itself: it imports the constant or calls the builder
here (``repro.tracking.store`` re-exports everything as ``ts.T_*`` / ``ts.M_*``). The strings are
stored in every committed result and MLflow store, so a value here must never change.

Deliberately outside this module: MLflow *params* (the run config's dotted keys, and the
sweep parent's ``sweep.*`` keys in ``repro.sweeps.record``), which name config fields, not
measurements.

Imports nothing (``repro.cli`` must stay light, tests/test_cli_imports.py).
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------ tags
T_EXPERIMENT = "repro.experiment"
T_VERSION = "repro.version"
T_ARM = "repro.arm"
T_SEED = "repro.seed"
T_GIT = "repro.git_sha"
T_HASH = "repro.config_hash"
T_KEY = "repro.run_key"
T_SCALE = "repro.scale"
T_KIND = "repro.kind"  # the run's role: one of ROLES below (tag name kept for old stores)
T_ROLE = T_KIND
ROLE_TRAIN, ROLE_SUMMARY, ROLE_SWEEP, ROLE_TRIAL = "train", "summary", "sweep", "trial"
ROLES = (ROLE_TRAIN, ROLE_SUMMARY, ROLE_SWEEP, ROLE_TRIAL)  # training run, `repro check`'s
# summary, a sweep's parent run, one sweep trial
T_FAIL = "repro.failure_reason"
T_PID = "repro.pid"
T_HOST = "repro.host"
T_PID_SINCE = "repro.pid_since"  # unix time at which repro.pid took the run (create or resume)
T_RESUMES = "repro.resumes"  # how many times an interrupted run was reopened
T_SUPERSEDED = "repro.superseded_by"  # an interrupted run with no checkpoint: the run id that
# retrained its run key from step 0 (the old run is then deleted, restorable, never reopened)
T_TORCH = "repro.torch"  # torch.__version__ of the process that trained the run
T_DEVICE = "repro.device"  # where the run trained, e.g. "cpu (x86_64, 1 threads)"
# the machine as a factor of a verdict (repro.machine.run_machine): routed numerics depend on it
T_CPU_MODEL = "repro.cpu_model"  # lscpu's model name, e.g. "AMD EPYC"
T_CPU_CAPABILITY = "repro.cpu_capability"  # torch.backends.cpu.get_cpu_capability(), e.g. AVX512
T_THREADS = "repro.threads"  # torch.get_num_threads() of the training process
T_WEIGHTS = "repro.weights"  # final weights, relative to the store: checkpoints/<run key>/final.pt
T_DATA_FP = "repro.data_fingerprint"  # LMDataModule.fingerprint: content + tokenizer + windowing
T_USES = "repro.uses_runs"  # summary run: the train run ids its verdicts used, comma-separated
T_CHECKED_BY = "repro.checked_by"  # train run: summary run ids that used it, newest first
T_NOTE = "mlflow.note.content"  # a run's (or experiment's) description in the MLflow UI (markdown)
# the experiment tag MLflow 3's UI reads to pick its view; "custom_model_development" is the
# model-training view (without it, 3.x may open an experiment as a GenAI one)
T_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
# an experiment tag holding a runs-table view (columns, order) that the UI opens from
# ``.../runs?viewStateShareKey=KEY``; `repro check` saves VIEW_VERDICTS: the verdicts as columns
T_SHARED_VIEW = "mlflow.sharedViewState."
VIEW_VERDICTS = "verdicts"
T_PARENT = "mlflow.parentRunId"  # a sweep trial's run: its sweep's parent run

# sweeps: the parent run (one per study) and each trial's child run
T_STUDY = "repro.study"
T_TRIAL = "repro.trial"
T_TRIAL_STATE = "repro.trial_state"
T_STORAGE = "repro.optuna_storage"  # a hash of the storage URL (the parent is found by it)
T_STORAGE_URL = "repro.optuna_storage_url"  # the URL itself, password redacted
T_TRIALS = "repro.trials"  # parent: trial counts by state (JSON)
T_PRUNED = "repro.pruned"  # trial run: why the pruner stopped it
T_BEST_TRIAL = "best.trial"
T_BEST_VALUE = "best.value"


def best_param_tag(key: str) -> str:
    """The sweep parent's tag holding the best trial's value of dotted key ``key``."""
    return f"best.{key}"


# --------------------------------------------------------- Optuna trial user attributes
A_FAILURE = "repro.failure"  # set on trials that failed in the objective (they count toward N)
A_LOST = "repro.lost"  # a trial whose worker died: why it was closed
A_SLOT = "repro.slot"  # an enqueued placeholder trial (a worker's claim on one of the N)
A_HOST = "repro.host"
A_PID = "repro.pid"
A_RUN = "mlflow_run_id"
A_STEPS = "steps"
A_SECONDS = "seconds"

# ----------------------------- MLflow tables of a summary run (mlflow.load_table reads them)
TABLE_CLAIMS = "claims_table.json"  # one row per claim: statement, paper, measured, verdict, rule
TABLE_SUMMARY = "summary_table.json"  # summary.csv: one row per (arm, seed) with its run id

# ------------------- dataset inputs of a training run (mlflow.data.context values; datasets.py)
CTX_TRAIN = "training"
CTX_VAL = "validation"

# --------------------------------------------------------------- metrics logged in training
TRAIN, VAL = "train", "val"  # the two splits a run logs

M_TRAIN_LOSS = "train/loss"  # cross-entropy + the weighted aux losses
M_TRAIN_CE = "train/ce"
M_TRAIN_AUX = "train/aux"  # sum of coef * aux over layers and terms
M_TRAIN_PPL = "train/ppl"  # exp(train/ce)
M_LR = "lr"
M_VAL_LOSS = "val/loss"
M_VAL_PPL = "val/ppl"
M_TOKENS_PER_S = "perf/tokens_per_s"
# how the run's throughput was obtained (repro.lit.callbacks.Throughput, repro.lit.contention):
M_TRAIN_CPU_S = "perf/train_cpu_s"  # process CPU seconds in the timed train steps
M_TRAIN_WALL_S = "perf/train_wall_s"  # wall seconds in the same steps
M_TOKENS_PER_CPU_S = "perf/tokens_per_cpu_s"  # tokens / CPU second: comparable across load
M_CPU_SHARE = "perf/cpu_share"  # CPU s / (wall s x threads): ~1 alone, lower when contended
M_LOAD_MEAN = "perf/load_mean"  # 1-min load average, mean of samples while training
M_LOAD_MAX = "perf/load_max"
M_PEERS_MAX = "perf/peers_max"  # most other repro train/bench processes seen at once
T_PEERS = "repro.peers"  # those processes, "run EXP --arm A --seeds S" each, "; "-joined
CONTENTION_METRICS = (M_TRAIN_CPU_S, M_TRAIN_WALL_S, M_TOKENS_PER_CPU_S, M_CPU_SHARE,
                      M_LOAD_MEAN, M_LOAD_MAX, M_PEERS_MAX)


def aux_metric(name: str) -> str:
    """One aux loss term (``load``, ``z``, ...), unweighted, mean over layers."""
    return f"train/aux_{name}"


# routing statistics of every MoE layer (repro.metrics.routing.RoutingMetric), logged per split
# mean over layers (``val_routing/load_cv``) and per layer (``val_routing/layer0/load_cv``):
# the scalars a batch can give, and the experts-per-token histogram bins (0, 1, 2, 3, 4, >4)
S_LOAD_CV = "load_cv"  # std/mean of the hard per-expert load
S_IMPORTANCE_CV = "importance_cv"  # std/mean of the summed gate probabilities [P-SHZ] Sec. 4
S_SMOOTH_LOAD_CV = "smooth_load_cv"  # std/mean of the noisy top-k smooth load [P-SHZ] App. A
S_MAX_MEAN_LOAD = "max_mean_load"  # max_e load_e / mean_e load_e
S_DROP_FRAC = "drop_frac"
S_ENTROPY = "entropy"
S_Z = "z"
S_ZERO_FRAC = "zero_frac"  # tokens no expert took (Expert Choice)
S_SECOND_FRAC = "second_frac"  # tokens whose 2nd expert was dispatched (GShard)
ROUTING_SCALARS = (S_LOAD_CV, S_IMPORTANCE_CV, S_SMOOTH_LOAD_CV, S_MAX_MEAN_LOAD, S_DROP_FRAC,
                   S_ENTROPY, S_Z, S_ZERO_FRAC, S_SECOND_FRAC)
EPT_BINS = ("0", "1", "2", "3", "4", "gt4")


def ept_stat(b: str) -> str:
    """The routing statistic of experts-per-token bin ``b`` (one of EPT_BINS)."""
    return f"ept_{b}"


def routing_metric(split: str, stat: str, layer: int | None = None) -> str:
    """``{split}_routing/{stat}`` (mean over layers), or one layer's ``.../layer{i}/{stat}``."""
    return f"{split}_routing/{stat}" if layer is None else f"{split}_routing/layer{layer}/{stat}"


def ept_metric(b: str, split: str = VAL) -> str:
    return routing_metric(split, ept_stat(b))


# the train drop fraction: each logged value is the mean over its log window (the routing metric
# accumulates every step), so the mean of the history is the drop rate over the whole run,
# derived by `repro check` (the final value alone hides an early collapse)
M_DROP = routing_metric(TRAIN, S_DROP_FRAC)
M_DROP_MEAN = routing_metric(TRAIN, S_DROP_FRAC + "_mean")

# ------------------------------------------------ metrics derived by `repro check` (per run)
M_MAX_SPIKE = "train/max_spike"  # from the train/loss history (check.spike_metrics)
M_DIVERGED = "train/diverged"
M_FINAL_VAL_LOSS = "final_val_loss"  # what claims read as the run's last val/loss

# ... by the eval-time analyses (repro.experiments.analyses), for the arms they study


def prune_loss_metric(rho: float) -> str:
    return f"prune_loss@{rho:g}"


def prune_delta_metric(rho: float) -> str:
    return f"prune_delta@{rho:g}"


def mask_delta_metric(frac: float) -> str:
    return f"mask_delta@{frac:.4g}"


def active_loss_metric(k: int) -> str:
    return f"active_loss@{k}"


NSAR_TAUS = (0.01, 0.05, 0.1, 0.2)  # the thresholds ActivationSparsity measures by default


def nsar_metric(tau: float) -> str:
    return f"nsar@{tau:g}"


M_DROP_SHARED_DELTA = "drop_shared_delta"
M_ACT_MEAN_ABS = "act_mean_abs"
M_EPT_0, M_EPT_1_2, M_EPT_3_4, M_EPT_GT4 = "ept_0", "ept_1_2", "ept_3_4", "ept_gt4"
M_GATE_MASS = "gate_mass"

# ------------------------------------------------------ metrics of summary and sweep runs


def claim_metric(claim: str) -> str:
    """A summary run's metric: the measured value of one claim."""
    return f"claim/{claim}"


def sweep_count_metric(state: str) -> str:
    """The sweep parent's count of trials in ``state`` (complete, pruned, failed)."""
    return f"sweep/n_{state}"


M_STEPS_SAVED = "sweep/steps_saved_fraction"
M_BEST_VALUE = "best_value"
M_TRIAL_VALUE = "trial/value"

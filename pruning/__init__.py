"""pruning: per-example scores, class-aware data pruning, retraining and export on JAX.

The public API, in the order data flows:

    dataset = load_dataset("digits")
    manifest = score_dataset(dataset, model="mlp", config=TrainConfig(epochs=5), seeds=range(5))
    subset = select(manifest, keep=0.5, strategy="hardest", class_rule="proportional", score="el2n")
    result = retrain(dataset, subset, model="mlp", config=TrainConfig(epochs=30), seeds=range(3))
    export_subset(subset, dataset, "subset.npz", format="npz")
"""

from pruning.runtime.xla import apply_xla_defaults

apply_xla_defaults()  # before anything starts XLA's CPU backend

from pruning import analysis  # noqa: E402
from pruning.config import PipelineConfig, load_config, parse_config  # noqa: E402
from pruning.data import Dataset, Normalizer, Split, load_dataset  # noqa: E402
from pruning.errors import UserError  # noqa: E402
from pruning.evaluation import classification_metrics  # noqa: E402
from pruning.export import export_subset  # noqa: E402
from pruning.manifest import Manifest  # noqa: E402
from pruning.models import MODELS, create_model, register_model  # noqa: E402
from pruning.pipeline import RunResult, run_pipeline  # noqa: E402
from pruning.report import noise_detection, score_correlations, seed_stability, study_table  # noqa: E402
from pruning.retraining import RetrainResult, retrain  # noqa: E402
from pruning.scores import ScoreRequest, available_scores, compute_scores, register_score  # noqa: E402
from pruning.scoring import score_dataset  # noqa: E402
from pruning.selection import select  # noqa: E402
from pruning.training import TrainConfig, TrainedModels, train_models  # noqa: E402

__version__ = "0.1.0"

__all__ = [
  "Dataset",
  "MODELS",
  "Manifest",
  "Normalizer",
  "PipelineConfig",
  "RetrainResult",
  "RunResult",
  "ScoreRequest",
  "Split",
  "TrainConfig",
  "TrainedModels",
  "UserError",
  "available_scores",
  "classification_metrics",
  "compute_scores",
  "create_model",
  "export_subset",
  "load_config",
  "load_dataset",
  "parse_config",
  "register_model",
  "register_score",
  "retrain",
  "run_pipeline",
  "analysis",
  "noise_detection",
  "score_correlations",
  "study_table",
  "score_dataset",
  "seed_stability",
  "select",
  "train_models",
]

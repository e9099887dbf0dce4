"""pruning: per-example scores, class-aware data pruning, retraining and export on JAX.

The public API, in the order data flows:

    dataset = load_dataset("digits")
    manifest = score_dataset(dataset, model="mlp", config=TrainConfig(epochs=5), seeds=range(5))
    subset = select(manifest, keep=0.5, strategy="hardest", class_rule="proportional", score="el2n")
    result = retrain(dataset, subset, model="mlp", config=TrainConfig(epochs=30), seeds=range(3))
    export_subset(subset, dataset, "subset.npz", format="npz")
"""

from pruning.config import PipelineConfig, load_config, parse_config
from pruning.data import Dataset, Normalizer, Split, load_dataset
from pruning.errors import UserError
from pruning.evaluation import classification_metrics
from pruning.export import export_subset
from pruning.manifest import Manifest
from pruning.models import MODELS, create_model
from pruning.pipeline import RunResult, run_pipeline
from pruning.retraining import RetrainResult, retrain
from pruning.scores import ScoreRequest, available_scores, compute_scores, register_score
from pruning.scoring import score_dataset
from pruning.selection import select
from pruning.training import TrainConfig, TrainedModels, train_models

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
    "register_score",
    "retrain",
    "run_pipeline",
    "score_dataset",
    "select",
    "train_models",
]

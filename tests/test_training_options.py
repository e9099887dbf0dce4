"""Optimiser settings against closed forms, the retraining budget, and configs built in Python."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pruning
from pruning.config import PipelineConfig, ProxyConfig, RetrainConfig, SelectionConfig
from pruning.errors import UserError
from pruning.training import TrainConfig, steps_per_epoch


def _run(optimizer: optax.GradientTransformation, params, grads_per_step):
  state = optimizer.init(params)
  history = [params]
  for grads in grads_per_step:
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    history.append(params)
  return history


def test_cosine_schedule_follows_its_closed_form():
  """SGD without momentum on a constant gradient of 1: step t moves by lr * (1 + cos(pi t / T)) / 2."""
  steps, lr = 10, 0.1
  config = TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=lr, schedule="cosine")
  history = _run(config.make_optimizer(steps), jnp.zeros(()), [jnp.ones(())] * steps)
  moves = -np.diff([float(p) for p in history])
  expected = lr * (1 + np.cos(np.pi * np.arange(steps) / steps)) / 2
  np.testing.assert_allclose(moves, expected, rtol=1e-5)
  constant = _run(TrainConfig(optimizer="sgd", momentum=0.0, learning_rate=lr).make_optimizer(steps), 0.0, [1.0] * 3)
  np.testing.assert_allclose(-np.diff(constant), lr, rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_weight_decay_shrinks_weights_as_decoupled_decay_says(optimizer):
  """With a zero gradient only the decay moves a weight: w <- w - lr * wd * w (AdamW's and SGD's first step)."""
  lr, wd, w = 0.1, 0.5, 2.0
  config = TrainConfig(optimizer=optimizer, momentum=0.0, learning_rate=lr, weight_decay=wd)
  history = _run(config.make_optimizer(5), jnp.asarray(w), [jnp.zeros(())])
  assert float(history[1]) == pytest.approx(w - lr * wd * w, rel=1e-6)
  without = _run(TrainConfig(optimizer=optimizer, learning_rate=lr).make_optimizer(5), jnp.asarray(w), [jnp.zeros(())])
  assert float(without[1]) == pytest.approx(w)


def test_budget_epochs_trains_the_subset_for_its_own_epochs(digits, linear_manifest):
  subset = pruning.select(linear_manifest, keep=300, strategy="random")
  config = TrainConfig(epochs=2, batch_size=64)
  by_epochs = pruning.retrain(
    digits, subset, spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]), budget="epochs", progress=False
  )
  by_steps = pruning.retrain(
    digits, subset, spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]), progress=False
  )
  assert by_epochs.num_steps == 2 * steps_per_epoch(300, 64) == 10
  assert by_steps.num_steps == 2 * steps_per_epoch(len(digits.train), 64)
  assert len(by_epochs.models.loss_history) == 2 and len(by_steps.models.loss_history) > 2
  with pytest.raises(UserError, match="budget"):
    pruning.retrain(
      digits,
      subset,
      spec=pruning.ModelSpec(model="linear", training=config, seeds=[0]),
      budget="minutes",
      progress=False,
    )


def test_configs_built_in_python_validate_and_normalise_themselves():
  assert ProxyConfig(seeds=5).seeds == (0, 1, 2, 3, 4)
  assert ProxyConfig(seeds=[3, 7]).seeds == (3, 7) == RetrainConfig(seeds="3,7").seeds
  assert PipelineConfig(name="x", scores="aum").scores == ("aum",)
  assert PipelineConfig(name="x", scores=["el2n@2"]).scores == ("el2n@2",)
  assert PipelineConfig(name="x", model="cnn").model_options == {}
  refused = [
    (lambda: ProxyConfig(seeds=[1, 1]), "distinct"),
    (lambda: ProxyConfig(seeds=2**32), "seed"),
    (lambda: RetrainConfig(budget="minutes"), "budget"),
    (lambda: SelectionConfig(name="s", strategy="hardst"), "did you mean 'hardest'"),
    (lambda: SelectionConfig(name="s", strategy="ccs", beta=2.0), "beta"),
    (lambda: SelectionConfig(name="s", strategy="probabilistic", temperature=0), "temperature"),
    (lambda: SelectionConfig(name="s", keep=2.5), "keep"),
    (lambda: PipelineConfig(name="x", model_options={"hiden": [3]}), "did you mean 'hidden'"),
    (lambda: PipelineConfig(name="x", scores=["el2m"]), "did you mean 'el2n'"),
    (lambda: PipelineConfig(name="x", selections=[SelectionConfig(name="full", keep=0.5)]), "not 'full'"),
    (lambda: pruning.ProxySpec(seeds=0), "seeds"),
    (lambda: pruning.ProxySpec(scores="el2n"), "list"),
    (lambda: pruning.ProxySpec(training=TrainConfig(epochs=3), vog_checkpoints=9, scores=["vog"]), "vog_checkpoints"),
  ]
  for build, message in refused:
    with pytest.raises(UserError, match=message):
      build()


def test_a_selection_keep_written_as_a_percentage_runs_to_the_results(tmp_path):
  config = pruning.parse_config(
    {
      "name": "pct",
      "model": "linear",
      "training": {"epochs": 1, "batch_size": 256},
      "proxy": {"seeds": [0]},
      "selections": [{"name": "half", "keep": "50%", "strategy": "random"}],
      "retrain": {"seeds": [0], "include_full": False},
    }
  )
  result = pruning.run_pipeline(config, output_dir=tmp_path / "run", progress=False, log=lambda line: None)
  assert result.results["keep"].tolist() == [0.5]


def test_import_pruning_changes_no_environment_variable_and_loads_no_jax(tmp_path):
  script = (
    "import os, sys; before = dict(os.environ); import pruning; "
    "assert dict(os.environ) == before; assert 'jax' not in sys.modules; "
    "pruning.Manifest; assert 'jax' not in sys.modules; print(len(pruning.__all__))"
  )
  env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
  done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert pruning.__all__ == sorted(pruning.__all__)
  assert all(getattr(pruning, name) is not None for name in pruning.__all__)

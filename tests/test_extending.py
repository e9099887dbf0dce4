"""Extending the pipeline: one registered object per plugin, reached from the API, configs and CLI."""

from __future__ import annotations

import numpy as np
import pytest

import pruning
from pruning.data import make_dataset, make_split
from pruning.errors import UserError
from pruning.registry import Registry
from pruning.training import TrainConfig


def test_a_registry_refuses_a_taken_name_and_suggests_the_nearest_for_an_unknown_one():
  registry: Registry[int] = Registry("widget")
  registry.register("spline", 1, description="a curve")
  with pytest.raises(ValueError, match="already registered"):
    registry.register("spline", 2)
  with pytest.raises(UserError, match="did you mean 'spline'"):
    registry.get("splin")
  assert list(registry) == ["spline"] and registry.descriptions() == {"spline": "a curve"}
  assert registry.unregister("spline") == 1 and "spline" not in registry


def test_a_registered_strategy_selects_from_the_api_and_the_config(linear_manifest):
  @pruning.register_strategy("middle_test", description="nearest the median difficulty")
  def middle(difficulty, k, *, n, rng, **_):
    return np.sort(np.argsort(np.abs(difficulty - np.median(difficulty)), kind="stable")[:k])

  try:
    subset = pruning.select(linear_manifest, keep=100, strategy="middle_test", class_rule="global", score="el2n")
    values = linear_manifest.table["el2n"].to_numpy()
    expected = np.sort(np.argsort(np.abs(values - np.median(values)), kind="stable")[:100])
    assert np.array_equal(subset.table["index"].to_numpy(), linear_manifest.table["index"].to_numpy()[expected])
    config = pruning.parse_config(
      {"name": "t", "selections": [{"name": "mid", "keep": 0.5, "strategy": "middle_test"}]}, source="test"
    )
    assert config.selections[0].strategy == "middle_test"
  finally:
    pruning.STRATEGIES.unregister("middle_test")
  with pytest.raises(UserError, match="unknown strategy"):
    pruning.select(linear_manifest, keep=100, strategy="middle_test", score="el2n")


def test_a_registered_class_rule_sets_the_quotas(linear_manifest):
  @pruning.register_class_rule("first_class_test", description="everything from class 0 first")
  def first_class(counts, k, **_):
    quotas = np.zeros_like(counts)
    quotas[0] = min(k, counts[0])
    quotas[1] = k - quotas[0]
    return quotas

  try:
    subset = pruning.select(linear_manifest, keep=200, strategy="random", class_rule="first_class_test")
  finally:
    pruning.CLASS_RULES.unregister("first_class_test")
  labels = linear_manifest.table["label"].to_numpy()
  n0 = int((labels == 0).sum())
  assert subset.selection["kept_per_class"][:2] == [n0, 200 - n0]


def test_a_registered_data_source_and_export_format(tmp_path, linear_manifest, digits):
  rng = np.random.default_rng(0)

  @pruning.register_source("blobs_test", description="two seeded Gaussian blobs")
  def blobs(argument, *, spec, **_):
    y = np.repeat([0, 1], 50)
    x = (rng.normal(size=(100, 3)) + 3 * y[:, None]).astype(np.float32)
    return make_dataset(spec, make_split(x, y, [f"b{i}" for i in range(100)], source=spec), None, num_classes=2)

  @pruning.register_format(
    "labels_csv_test", check_output=lambda path, **_: None, description="the kept labels, one per line"
  )
  def labels_csv(kept, dataset, subset, path, *, overwrite, **_):
    with open(path, "w") as handle:
      handle.writelines(f"{label}\n" for label in kept.y)
    return path

  try:
    dataset = pruning.load_dataset("blobs_test")
    assert len(dataset.train) == 100 and dataset.spec == "blobs_test"
    with pytest.raises(UserError, match="dataset spec"):
      pruning.load_dataset("blobs_test:extra")  # takes no argument
    subset = pruning.select(linear_manifest, keep=50, strategy="random")
    out = pruning.export_subset(subset, digits, tmp_path / "labels.txt", format="labels_csv_test")
    assert [int(v) for v in open(out).read().split()] == subset.table["label"].tolist()
  finally:
    pruning.DATA_SOURCES.unregister("blobs_test")
    pruning.EXPORT_FORMATS.unregister("labels_csv_test")


def test_pruning_list_shows_every_registered_plugin(capsys):
  from pruning.cli import main

  @pruning.register_strategy("listed_test", description="shown by pruning list")
  def listed(difficulty, k, *, n, rng, **_):
    return np.arange(k)

  try:
    assert main(["list"]) == 0
  finally:
    pruning.STRATEGIES.unregister("listed_test")
  out = capsys.readouterr().out
  for name in [*pruning.available_scores(), *pruning.MODELS, *pruning.STRATEGIES, *pruning.CLASS_RULES]:
    assert f"  {name} " in out, name
  assert "listed_test" in out and "shown by pruning list" in out
  for name in [*pruning.retraining.REMEDIES, *pruning.EXPORT_FORMATS, "npz:PATH", "tabular:RATIO", "digits"]:
    assert f"  {name} " in out, name


def test_a_registered_score_declares_its_needs_and_reaches_the_manifest(digits):
  """A user's score of the true-class logit, read at the end of training, against the logits themselves."""

  @pruning.register_score("true_logit_test", harder="lower", description="the true class's logit")
  def true_logit(context, epoch):
    logits = context.logits(epoch)
    return np.take_along_axis(logits, context.y[None, :, None], axis=-1)[..., 0]

  try:
    spec = pruning.ProxySpec(model="linear", training=TrainConfig(epochs=1), seeds=[0, 1], scores=["true_logit_test"])
    models = pruning.train_proxies(digits, spec, progress=False)
    manifest = pruning.score_proxies(models, digits, spec, progress=False)
  finally:
    pruning.scores.registry.SCORES.unregister("true_logit_test")
  logits = models.logits(digits.train.x)
  expected = logits[:, np.arange(len(digits.train)), digits.train.y]
  np.testing.assert_allclose(manifest.table["true_logit_test_seed1"], expected[1], rtol=1e-6)
  assert manifest.scores["true_logit_test"]["harder"] == "lower"
  assert models.dynamics == {}  # nothing asked for the training-dynamics recorder


def test_vog_alone_runs_its_hook_and_not_the_dynamics_recorder(digits):
  spec = pruning.ProxySpec(model="linear", training=TrainConfig(epochs=2), seeds=[0], scores=["vog"])
  models = pruning.train_proxies(digits, spec, progress=False)
  assert models.dynamics == {} and models.extras["vog_raw"].shape == (1, len(digits.train))


def test_an_epoch_hook_sees_every_epoch_and_a_checkpointed_run_needs_its_state(digits, tmp_path):
  seen = []

  def hook(epoch, graphdef, normalizer, params, rest):
    seen.append(epoch)

  assert isinstance(hook, pruning.EpochHook)
  config = TrainConfig(epochs=3, batch_size=256)
  x, y = digits.train.x, digits.train.y
  pruning.train_models(
    pruning.TrainData(x=x, y=y, num_classes=10),
    pruning.ModelSpec(model="linear", seeds=[0], training=config),
    epoch_hooks=[hook],
    progress=False,
  )
  assert seen == [1, 2, 3]
  with pytest.raises(UserError, match="state_dict"):
    pruning.train_models(
      pruning.TrainData(x=x, y=y, num_classes=10),
      pruning.ModelSpec(model="linear", seeds=[0], training=config),
      epoch_hooks=[hook],
      checkpointer=pruning.training.TrainingCheckpointer(tmp_path / "ckpt"),
      progress=False,
    )


def test_score_job_from_python_writes_the_manifest_score_dataset_makes(digits, tmp_path, monkeypatch):
  monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
  config = pruning.parse_config(
    {"name": "job", "training": {"epochs": 1, "batch_size": 256}, "proxy": {"seeds": [0]}, "model": "linear"}
  )
  result = pruning.score_job(config, tmp_path / "m.parquet", progress=False, log=lambda line: None)
  assert result.rows == len(digits.train)
  direct = pruning.score_dataset(digits, config.proxy_spec(), pipeline_config=config.to_dict(), progress=False)
  direct.to_parquet(tmp_path / "direct.parquet")
  assert (tmp_path / "m.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()
  assert not list(tmp_path.glob(".m.parquet.partial*"))  # the resume folder went with the finished job


PLUGIN = """
import numpy as np
from flax import nnx

import pruning


class WideLinear(nnx.Module):
  def __init__(self, *, input_shape, num_classes, rngs, width=8):
    self.body = nnx.Linear(int(np.prod(input_shape)), width, rngs=rngs)
    self.head = nnx.Linear(width, num_classes, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.body(x.reshape(len(x), -1))))


pruning.register_model("plugin_net_test", WideLinear)
"""


@pytest.mark.slow
def test_a_model_in_the_users_own_module_is_known_to_the_command_line(tmp_path, run_cli, capsys, monkeypatch):
  """`--plugin mymodels` (a module in the working folder, which the `pruning` script does not put
  on the path) and `plugins:` in YAML; what re-reads the recorded config asks for the flag rather
  than importing code a manifest names."""
  from pruning.cli import main

  (tmp_path / "mymodels.py").write_text(PLUGIN)

  def pruning_command(*args):
    code, _, err = run_cli(*args, env={"SOURCE_DATE_EPOCH": "1700000000"})
    return code, err

  def refused_in_this_process(*args):  # refusals that import no plugin: no new process needed
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err

  score = ["score", "--data", "digits", "--model", "plugin_net_test", "--epochs", "1", "--seeds", "1", "--no-progress"]
  code, err = refused_in_this_process(*score, "--out", "m.parquet")
  assert code == 2 and "plugin_net_test" in err
  code, err = pruning_command(*score, "--plugin", "mymodels", "--out", "m.parquet")
  assert code == 0, err
  manifest = pruning.Manifest.read_parquet(tmp_path / "m.parquet")
  assert manifest.provenance["model"]["name"] == "plugin_net_test"
  assert manifest.provenance["config"]["plugins"] == ["mymodels"]
  code, err = refused_in_this_process("flag", "m.parquet", "--folds", "2", "--out", "f.parquet", "--no-progress")
  assert code == 2 and "give --plugin mymodels" in err and err.count("\n") == 1
  code, err = pruning_command("flag", "m.parquet", "--folds", "2", "--out", "f.parquet", "--plugin", "mymodels.py")
  assert code == 2 and "give --plugin mymodels" in err  # the recorded name, not another spelling of it
  code, err = pruning_command("flag", "m.parquet", "--folds", "2", "--out", "f.parquet", "--plugin", "mymodels")
  assert code == 0, err
  config = (
    "name: plugged\nplugins: [./mymodels.py]\nmodel: plugin_net_test\nmodel_options: {width: 4}\n"
    "training: {epochs: 1}\nproxy: {seeds: 1, epochs: 1}\nselections: [{name: half, score: el2n, keep: 0.5}]\n"
    "retrain: {seeds: 1}\n"
  )
  (tmp_path / "plugged.yaml").write_text(config)
  code, err = pruning_command("run", "plugged.yaml", "--output", "run", "--no-progress")
  assert code == 0, err
  code, err = refused_in_this_process("check", "run")
  assert code == 2 and "give --plugin ./mymodels.py" in err
  code, err = pruning_command("check", "run", "--plugin", "./mymodels.py")
  assert code == 0, err


def test_a_plugin_that_fails_or_is_missing_is_one_line(tmp_path, capsys, monkeypatch):
  from pruning.cli import main

  monkeypatch.chdir(tmp_path)
  (tmp_path / "broken_plugin_test.py").write_text("raise RuntimeError('no GPU here')\n")
  assert main(["list", "--plugin", "broken_plugin_test"]) == 2
  assert "plugin 'broken_plugin_test' failed to import (RuntimeError: no GPU here)" in capsys.readouterr().err
  assert main(["list", "--plugin", "no_such_plugin_test"]) == 2
  assert "no plugin module 'no_such_plugin_test'" in capsys.readouterr().err
  assert main(["list", "--plugin", str(tmp_path / "missing.py")]) == 2
  assert "is not a .py file" in capsys.readouterr().err


def test_a_registered_flagging_method_flags_from_the_api_with_the_fold_proxies(digits):
  from pruning.flagging import Flags, flag_label_issues, recorded_proxy_spec
  from pruning.flagging.training import out_of_fold_probabilities

  config = pruning.parse_config(
    {"name": "t", "dataset": {"spec": "digits"}, "model": "linear", "proxy": {"seeds": 1, "epochs": 1}}
  )
  manifest = pruning.score_dataset(digits, config.proxy_spec(), pipeline_config=config.to_dict(), progress=False)

  @pruning.register_flagging_method("low_margin_test", description="out-of-fold margin over a half")
  def low_margin(context):
    p = context.out_of_fold()
    margin = p.max(axis=1) - p[np.arange(len(p)), context.labels]
    return Flags(suspect=margin > 0.5, evidence=margin, record={"threshold": 0.5})

  try:
    options = pruning.FlagOptions(method="low_margin_test", folds=2)
    flagged = flag_label_issues(manifest, digits, options=options, progress=False)
  finally:
    pruning.FLAGGING_METHODS.unregister("low_margin_test")
  # The reference: the same folds trained directly, the margin computed here.
  p = out_of_fold_probabilities(digits, recorded_proxy_spec(manifest), folds=2, progress=False)
  margin = p.max(axis=1) - p[np.arange(len(p)), digits.train.y]
  table = flagged.table.sort_values("index")
  assert np.array_equal(table["is_suspect"].to_numpy(), margin > 0.5)
  np.testing.assert_allclose(table["suspect_evidence"].to_numpy(), margin)
  assert np.array_equal(table["likely_label"].to_numpy(), p.argmax(axis=1))
  record = flagged.provenance["flagging"]
  assert record["method"] == "low_margin_test" and record["threshold"] == 0.5 and record["folds"] == 2
  assert record["flagged"] == int((margin > 0.5).sum())
  with pytest.raises(UserError, match="unknown flagging method 'low_margin_test'"):
    pruning.FlagOptions(method="low_margin_test")

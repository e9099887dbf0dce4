"""Pipeline configs: YAML -> dataclasses, with unknown keys refused.

One YAML file describes one experiment (see `pipelines/quickstart.yaml`):

    name: quickstart
    dataset: digits                     # or {spec, label_column, data_dir, test_split, holdout,
                                        #     validation, long_tail, label_noise, label_noise_kind,
                                        #     seed, stream,
                                        #     normalize: auto|per_feature|per_channel|global|none,
                                        #     text_column, text_pair_column, tokenizer, vocab_size,
                                        #     max_length, lowercase}
    model: mlp
    model_options: {hidden: [256, 256]}
    training: {epochs: 30, batch_size: 64, optimizer: adam, learning_rate: 0.001}
    proxy: {seeds: 5, epochs: 3}        # proxies train `epochs` (null: training.epochs)
    scores: [el2n, loss]                # NAME or NAME@EPOCH
    selections:
      - {name: el2n_hardest, score: el2n, strategy: hardest, class_rule: proportional, keep: 0.5}
      - {name: random, strategy: random, keep: 0.5}
    sweep: {keep: [0.1, 0.3, 0.5]}      # optional: a study; selections then give no `keep`
    retrain: {seeds: 3, budget: steps, include_full: true}
    output: runs/quickstart
    plugins: [mymodels]                 # optional: modules that register models, scores, ...
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from pruning.config.sections import Arm, ProxyConfig, RetrainConfig, SelectionConfig, SweepConfig
from pruning.data.config import DataConfig
from pruning.errors import UserError, unknown_name_error
from pruning.flagging import FlagOptions
from pruning.models import validate_model_options
from pruning.plugins import check_loaded, load_plugins
from pruning.retraining import BUDGETS
from pruning.retraining.remedies import check_remedy_options
from pruning.runtime.safe_yaml import load_yaml
from pruning.runtime.validation import check_fields, parse_seeds
from pruning.scores import parse_requests
from pruning.scores.run import ProxySpec
from pruning.selection import parse_keep
from pruning.training import ModelSpec, TrainConfig

# A config file is a few kilobytes; anything far larger is a mistake or an attack.
MAX_CONFIG_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class PipelineConfig:
  name: str
  dataset: DataConfig = DataConfig()
  model: str = "mlp"
  model_options: dict = dataclasses.field(default_factory=dict)
  training: TrainConfig = TrainConfig()
  proxy: ProxyConfig = ProxyConfig()
  scores: tuple[str, ...] = ("el2n",)
  selections: tuple[SelectionConfig, ...] = ()
  sweep: SweepConfig = SweepConfig()
  retrain: RetrainConfig = RetrainConfig()
  flag: FlagOptions | None = None  # flag likely wrong labels after scoring (`pruning.flagging`)
  output: str | None = None
  plugins: tuple[str, ...] = ()  # the user's modules that register models, scores, sources (`pruning.plugins`)

  def __post_init__(self):
    if isinstance(self.scores, (str, list)):
      object.__setattr__(self, "scores", tuple([self.scores] if isinstance(self.scores, str) else self.scores))
    if isinstance(self.selections, list):
      object.__setattr__(self, "selections", tuple(self.selections))
    check_fields(self, "config")
    object.__setattr__(self, "model_options", validate_model_options(self.model, self.model_options))
    object.__setattr__(self, "dataset", self.dataset.for_model(self.model, self.model_options))
    requests = parse_requests(self.scores)
    object.__setattr__(self, "scores", tuple(r.name if r.epoch is None else f"{r.name}@{r.epoch}" for r in requests))
    names = [s.name for s in self.selections]
    if len(set(names)) != len(names) or "full" in names:
      raise UserError(f"selection names must be unique and not 'full', got {names}")
    check_remedy_options(self.remedies, self.retrain.remedy_options)
    dropping = [s.name for s in self.selections if s.drop_suspects]
    if dropping and self.flag is None:
      raise UserError(
        f"selection {dropping[0]!r} drops suspects, but nothing flags them: add `flag: {{method: confident_learning}}`"
      )

  @property
  def proxy_training(self) -> TrainConfig:
    if self.proxy.epochs is None:
      return self.training
    return dataclasses.replace(self.training, epochs=self.proxy.epochs)

  def proxy_spec(self) -> ProxySpec:
    """The proxies this config trains and what it scores with them."""
    return ProxySpec(
      model=self.model,
      model_options=self.model_options,
      training=self.proxy_training,
      seeds=self.proxy.seeds,
      scores=self.scores,
      vog_checkpoints=self.proxy.vog_checkpoints,
      vog_window=self.proxy.vog_window,
      dynamics_window=self.proxy.dynamics_window,
      prototypes=self.proxy.prototypes,
      duplicate_similarity=self.proxy.duplicate_similarity,
      tracin_checkpoints=self.proxy.tracin_checkpoints,
      keep_checkpoints=self.proxy.keep_checkpoints,
    )

  def retrain_spec(self) -> ModelSpec:
    """The models each selection retrains: the same model and training, the retraining seeds."""
    return ModelSpec(model=self.model, options=self.model_options, seeds=self.retrain.seeds, training=self.training)

  def with_overrides(
    self,
    *,
    data: str | None = None,
    holdout: float | None = None,
    normalize: str | None = None,
    model: str | None = None,
    model_options: dict | None = None,
    source: str | None = None,
    **data_options,
  ) -> PipelineConfig:
    """This config on other data, holdout, normalisation or model (with that
    model's default options, updated by `model_options`), or with any other
    `DataConfig` field in `data_options` (label_column, text_column,
    categorical, max_length, ...); None keeps the config's own
    (`model_options` alone update the config's model's)."""
    config = self
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(data_options) - fields)
    if unknown:
      raise unknown_name_error("dataset option", unknown[0], sorted(fields))
    changes = {k: v for k, v in {"spec": data, "holdout": holdout, "normalize": normalize, **data_options}.items()}
    changes = {k: v for k, v in changes.items() if v is not None and v != ""}
    if changes:
      dataset = _build(DataConfig, {**dataclasses.asdict(self.dataset), **changes}, where="the command line")
      config = dataclasses.replace(config, dataset=dataset.for_model(config.model, config.model_options))
    if model or model_options:
      options = {} if model else dict(config.model_options)
      config = parse_config(
        {**config.to_dict(), "model": model or config.model, "model_options": {**options, **(model_options or {})}},
        source=f"{source or 'the config'} with model {model or config.model}",
      )
    return config

  @property
  def arms(self) -> tuple[Arm, ...]:
    """The selections to run. A sweep crosses every rule with every fraction
    kept, and adds a `random` rule with the rules' class rule if the config
    has none (one per class rule in use)."""
    if not self.sweep.keep:
      return tuple(Arm(name=s.name, rule=s.name, selection=s) for s in self.selections)
    rules = list(self.selections)
    if not any(s.strategy == "random" for s in rules):
      # The baseline shares each rule's class rule, so it is comparable: one
      # random arm per class rule in use (`random`, or `random_<rule>` for several).
      class_rules = list(dict.fromkeys(s.class_rule for s in rules))
      taken = {s.name for s in rules}
      for class_rule in class_rules:
        name = "random" if len(class_rules) == 1 else f"random_{class_rule}"
        if name not in taken:
          rules.append(SelectionConfig(name=name, strategy="random", class_rule=class_rule))
    return tuple(
      Arm(name=f"{rule.name}@{keep}", rule=rule.name, selection=dataclasses.replace(rule, keep=keep))
      for keep in self.sweep.keep
      for rule in rules
    )

  @property
  def output_dir(self) -> Path:
    return Path(self.output or f"runs/{self.name}")

  @property
  def remedies(self) -> tuple[str, ...]:
    """The remedies every arm is retrained with: the sweep's, else `retrain.remedy`."""
    return self.sweep.remedy or (self.retrain.remedy,)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def parse_model_options(pairs) -> dict:
  """`["hidden=[512,512]", ...]` (KEY=VALUE, the value in YAML) -> `{"hidden": [512, 512]}`."""
  options = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise UserError(f"--model-option {pair!r} is not KEY=VALUE: write e.g. hidden=[512,512]")
    try:
      options[key.strip()] = load_yaml(value, source=f"--model-option {pair!r}") if value.strip() else None
    except UserError:
      raise UserError(f"--model-option {pair!r}: the value is not valid YAML") from None
  return options


def _fields(cls, mapping, *, where: str) -> dict:
  if not isinstance(mapping, dict):
    raise UserError(f"{where}: expected a mapping of keys to values, got {type(mapping).__name__}")
  names = [f.name for f in dataclasses.fields(cls)]
  for key in mapping:
    if key not in names:
      error = unknown_name_error(f"key in {where}", str(key), names)
      raise UserError(f"{error} (in the config file)")
  return dict(mapping)


def _build(cls, mapping, *, where: str):
  values = _fields(cls, mapping, where=where)
  try:
    return cls(**values)
  except TypeError as error:
    raise UserError(f"{where}: {error}") from None


def parse_config(raw: dict, *, source: str = "config", import_plugins: bool = True) -> PipelineConfig:
  """Validates a loaded YAML mapping into a `PipelineConfig`.

  `plugins` are imported first (`import_plugins`), so the rest may name what
  they register; a config read back from a manifest passes False, and its
  plugins must have been loaded already (`pruning.plugins.check_loaded`).
  """
  values = _fields(PipelineConfig, raw, where=source)
  plugins = values.get("plugins") or []
  if isinstance(plugins, str):
    plugins = [plugins]
  if not isinstance(plugins, (list, tuple)) or not all(isinstance(p, str) for p in plugins):
    raise UserError(f"{source}: plugins must be a list of module names or .py files, got {plugins!r}")
  values["plugins"] = tuple(plugins)
  if import_plugins:
    load_plugins(plugins)
  else:
    check_loaded(plugins, source=source)
  if "name" not in values:
    raise UserError(f"{source}: no `name`: give the experiment a name (it names the run folder)")
  if not isinstance(values["name"], str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", values["name"]):
    raise UserError(
      f"{source}: name {values['name']!r} may use only letters, digits, '_', '.', '-' (1 to 100"
      " of them, not starting with '.')"
    )
  dataset = values.get("dataset", "digits")
  values["dataset"] = (
    DataConfig(spec=dataset) if isinstance(dataset, str) else _build(DataConfig, dataset, where=f"{source}: dataset")
  )
  if not isinstance(values.get("model", "mlp"), str):
    raise UserError(f"{source}: model must be a name such as mlp, got {values['model']!r}")
  options = values.get("model_options") or {}
  if not isinstance(options, dict):
    raise UserError(f"{source}: model_options must be a mapping such as {{hidden: [256, 256]}}, got {options!r}")
  values["model_options"] = validate_model_options(values.get("model", "mlp"), options)
  values["training"] = _build(TrainConfig, values.get("training") or {}, where=f"{source}: training")
  proxy = _fields(ProxyConfig, values.get("proxy") or {}, where=f"{source}: proxy")
  if "seeds" in proxy:
    proxy["seeds"] = parse_seeds(proxy["seeds"], where=f"{source}: proxy.seeds")
  values["proxy"] = _build(ProxyConfig, proxy, where=f"{source}: proxy")
  if values["proxy"].epochs is not None:
    TrainConfig(epochs=values["proxy"].epochs)
  scores = values.get("scores", ["el2n"])
  if isinstance(scores, str):
    scores = [scores]
  values["scores"] = tuple(r.column if r.epoch is None else f"{r.name}@{r.epoch}" for r in parse_requests(scores))
  sweep = _fields(SweepConfig, values.get("sweep") or {}, where=f"{source}: sweep")
  if "keep" in sweep:
    keeps = sweep["keep"] if isinstance(sweep["keep"], (list, tuple)) else [sweep["keep"]]
    sweep["keep"] = tuple(parse_keep(k) for k in keeps)
    if len(set(sweep["keep"])) != len(sweep["keep"]):
      raise UserError(f"{source}: sweep.keep repeats a value: {list(keeps)}")
  sweep = values["sweep"] = _build(SweepConfig, sweep, where=f"{source}: sweep")
  selections = []
  if not isinstance(values.get("selections") or [], (list, tuple)):
    raise UserError(f"{source}: selections must be a list of {{name, keep, strategy, ...}} mappings")
  for i, item in enumerate(values.get("selections") or []):
    where = f"{source}: selections[{i}]"
    selection = _build(SelectionConfig, item, where=where)
    if sweep.keep and selection.keep is not None:
      raise UserError(f"{where}: `keep` is set by `sweep.keep` in a study: remove it from the selection")
    if not sweep.keep:
      if selection.keep is None:
        raise UserError(f"{where}: no `keep`: give a fraction (0.5) or a count (700), or sweep several")
      parse_keep(selection.keep)
    selections.append(selection)
  names = [s.name for s in selections]
  if len(set(names)) != len(names) or "full" in names:
    raise UserError(f"{source}: selection names must be unique and not 'full', got {names}")
  values["selections"] = tuple(selections)
  if sweep.keep and not selections:
    raise UserError(f"{source}: a sweep needs `selections` to sweep (the rules, without `keep`)")
  retrain = _fields(RetrainConfig, values.get("retrain") or {}, where=f"{source}: retrain")
  if "seeds" in retrain:
    retrain["seeds"] = parse_seeds(retrain["seeds"], where=f"{source}: retrain.seeds")
  values["retrain"] = _build(RetrainConfig, retrain, where=f"{source}: retrain")
  if values["retrain"].budget not in BUDGETS:
    raise unknown_name_error("retraining budget", values["retrain"].budget, BUDGETS)
  flag = values.get("flag")
  values["flag"] = None if flag is None else _build(FlagOptions, flag, where=f"{source}: flag")
  config = PipelineConfig(**values)
  size = len(json.dumps(config.to_dict(), default=str))
  if size > MAX_CONFIG_BYTES:
    raise UserError(f"{source}: the config expands to {size} bytes: a pipeline config is a few kilobytes; shorten it")
  return config


def load_config(path: str | Path) -> PipelineConfig:
  """Reads a pipeline YAML file: plain data only (safe loader), no aliases
  (a few bytes of them can expand to gigabytes), no repeated keys."""
  path = Path(path)
  if not path.is_file():
    raise UserError(f"no config file at {str(path)!r}: check the path (examples are in pipelines/)")
  try:
    with open(path, "rb") as handle:
      data = handle.read(MAX_CONFIG_BYTES + 1)
  except OSError as error:
    raise UserError(f"cannot read config {str(path)!r} ({error.strerror}): check its permissions") from None
  if len(data) > MAX_CONFIG_BYTES:
    raise UserError(f"{str(path)!r} is over {MAX_CONFIG_BYTES} bytes: a pipeline config is a few kilobytes")
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError:
    raise UserError(f"{str(path)!r} is not UTF-8 text: give a YAML config file") from None
  return parse_config(load_yaml(text, source=str(path)), source=str(path))


__all__ = [
  "Arm",
  "DataConfig",
  "PipelineConfig",
  "ProxyConfig",
  "RetrainConfig",
  "SelectionConfig",
  "SweepConfig",
  "load_config",
  "load_yaml",
  "parse_config",
  "parse_model_options",
]

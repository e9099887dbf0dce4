"""Data loss and hostile input: every case here once destroyed, corrupted or
silently accepted something. Each must now fail with one line (exit status 2
from the CLI), delete nothing and write nothing outside the named output."""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import lock_held_elsewhere, pruning_process, small_images, write_npz

import pruning
from pruning import UserError
from pruning.cli import main
from pruning.config import load_config, parse_config
from pruning.jobs.locking import folder_lock, output_lock
from pruning.runtime.atomic import atomic_path, check_path_component
from pruning.runtime.folders import publish_folder, staging_folder
from pruning.training.checkpointing import TrainingCheckpointer

TINY = (
  "name: tiny\ndataset: digits\nmodel: linear\ntraining: {epochs: 1, batch_size: 256}\n"
  "proxy: {seeds: 1}\nscores: [el2n]\n"
  "selections:\n  - {name: hard, score: el2n, keep: 0.3, class_rule: proportional}\n"
  "  - {name: rand, strategy: random, keep: 0.3}\nretrain: {seeds: 1}\n"
)


def run_cli(argv, capsys) -> tuple[int, str]:
  code = main(argv)
  err = capsys.readouterr().err
  return code, err


def one_line_error(code: int, err: str) -> None:
  lines = [line for line in err.splitlines() if line.startswith("pruning: error:")]
  assert code == 2 and len(lines) == 1, (code, err)
  assert "Traceback" not in err


def tree(folder) -> dict[str, bytes]:
  """Every file under `folder` and its bytes."""
  return {
    os.path.relpath(os.path.join(p, f), folder): open(os.path.join(p, f), "rb").read()
    for p, _, files in os.walk(folder)
    for f in files
  }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("run")
  config = folder / "tiny.yaml"
  config.write_text(TINY)
  assert main(["run", str(config), "--output", str(folder / "run"), "--no-progress"]) == 0
  return folder / "run"


@pytest.fixture
def run_copy(finished_run, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(finished_run, copy)
  return copy


# --- 1. Names that become paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../victim", "sub/dir", "..", ".hidden", "a\\b", "x\ny", "", "a" * 300, 5])
def test_names_that_become_paths_are_checked(name):
  with pytest.raises(UserError):
    check_path_component(name, what="selection name")
  raw = {"name": "x", "selections": [{"name": name, "keep": 0.5, "strategy": "random"}]}
  with pytest.raises(UserError):
    parse_config(raw)


def test_a_hostile_selection_name_deletes_and_writes_nothing(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  victim = tmp_path / "victimtest" / "victim"
  victim.mkdir(parents=True)
  (victim / "precious.txt").write_text("keep me")
  config = tmp_path / "cfg.yaml"
  config.write_text(TINY.replace("name: hard", "name: ../../../victim"))
  before = tree(tmp_path)
  code, err = run_cli(["run", str(config), "--output", "victimtest/run", "--no-progress"], capsys)
  one_line_error(code, err)
  assert tree(tmp_path) == before


@pytest.mark.slow
def test_from_manifest_never_takes_names_or_output_from_the_file(finished_run, tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  manifest = pruning.Manifest.read_parquet(finished_run / "manifest.parquet")
  hostile = json.loads(json.dumps(manifest.provenance))
  hostile["config"]["selections"][0]["name"] = "../../escape"
  pruning.Manifest(manifest.table, hostile).to_parquet(tmp_path / "hostile.parquet")
  code, err = run_cli(["run", "--from-manifest", str(tmp_path / "hostile.parquet"), "--no-progress"], capsys)
  one_line_error(code, err)
  # A sound config whose recorded output points outside: the run goes to runs/NAME instead.
  elsewhere = json.loads(json.dumps(manifest.provenance))
  elsewhere["config"]["output"] = str(tmp_path / "outside")
  pruning.Manifest(manifest.table, elsewhere).to_parquet(tmp_path / "elsewhere.parquet")
  assert main(["run", "--from-manifest", str(tmp_path / "elsewhere.parquet"), "--no-progress"]) == 0
  assert not (tmp_path / "outside").exists() and (tmp_path / "runs" / "tiny" / "report.json").is_file()


def test_clearing_checkpoints_leaves_what_the_job_did_not_write(tmp_path):
  folder = tmp_path / "ckpt"
  (folder / "epoch-000001").mkdir(parents=True)
  (folder / "epoch-000002.partial").mkdir()
  (folder / "notes.txt").write_text("mine")
  TrainingCheckpointer(folder).clear()
  assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
  (folder / "notes.txt").unlink()
  TrainingCheckpointer(folder).clear()
  assert not folder.exists()


# --- 2 and 3. Export folders --------------------------------------------------------------------------------


@pytest.fixture
def image_subset(tmp_path):
  x, y = small_images(n=24, num_classes=2, shape=(4, 4, 1))
  path = write_npz(tmp_path / "imgs.npz", x=x, y=y, x_test=x[:6], y_test=y[:6])
  dataset = pruning.load_dataset(f"npz:{path}")
  manifest = pruning.score_dataset(
    dataset, model="linear", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
  )
  subset = pruning.select(manifest, keep=0.5, strategy="random")
  subset.to_parquet(tmp_path / "subset.parquet")
  return f"npz:{path}", tmp_path / "subset.parquet"


def test_image_export_overwrite_replaces_only_an_earlier_export(image_subset, tmp_path, capsys, monkeypatch):
  spec, subset = image_subset
  user = tmp_path / "userdir"
  user.mkdir()
  (user / "thesis.tex").write_text("years of work")
  base = ["export", str(subset), "--data", spec, "--format", "images"]
  one_line_error(*run_cli(base + ["--out", str(user), "--overwrite"], capsys))
  assert (user / "thesis.tex").read_text() == "years of work"
  monkeypatch.chdir(tmp_path)
  before = tree(tmp_path)
  one_line_error(*run_cli(base + ["--out", ".", "--overwrite"], capsys))
  one_line_error(*run_cli(base + ["--out", str(tmp_path.parent), "--overwrite"], capsys))
  assert tree(tmp_path) == before
  os.symlink(user, tmp_path / "link")
  one_line_error(*run_cli(base + ["--out", str(tmp_path / "link"), "--overwrite"], capsys))
  assert (user / "thesis.tex").read_text() == "years of work"
  # An earlier export of ours is replaced, and the files come out readable as the umask says.
  assert main(base + ["--out", str(tmp_path / "imgs")]) == 0
  first = tree(tmp_path / "imgs")
  one_line_error(*run_cli(base + ["--out", str(tmp_path / "imgs")], capsys))
  assert main(base + ["--out", str(tmp_path / "imgs"), "--overwrite"]) == 0
  assert tree(tmp_path / "imgs") == first
  assert oct(os.stat(tmp_path / "imgs").st_mode & 0o777) == oct(0o777 & ~current_umask())
  png = next((tmp_path / "imgs" / "train").rglob("*.png"))
  assert oct(os.stat(png).st_mode & 0o777) == oct(0o666 & ~current_umask())
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imgs.")]


def current_umask() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def test_a_folder_that_appears_mid_export_is_never_replaced(tmp_path):
  final = tmp_path / "out"
  staging = staging_folder(final)
  (staging / "new.png").write_bytes(b"new")
  final.mkdir()  # another job, or a colleague, made it meanwhile
  (final / "theirs.txt").write_text("theirs")
  with pytest.raises(UserError, match="appeared while"):
    publish_folder(staging, final, overwrite=False, what="image folder")
  assert tree(final) == {"theirs.txt": b"theirs"}
  with pytest.raises(UserError, match="not written by `pruning export`"):
    publish_folder(staging, final, overwrite=True, what="image folder")
  assert tree(final) == {"theirs.txt": b"theirs"}


@pytest.mark.slow
def test_two_concurrent_image_exports_to_one_folder_do_not_both_succeed(image_subset, tmp_path):
  spec, subset = image_subset
  command = ["export", subset, "--data", spec, "--format", "images", "--out", tmp_path / "same"]
  jobs = [pruning_process(*command) for _ in range(2)]
  codes = sorted(job.wait(timeout=300) for job in jobs)
  assert codes == [0, 2]
  assert (tmp_path / "same" / ".pruning-export").is_file()


# --- 4. Lock files -------------------------------------------------------------------------------------------


def test_a_planted_lock_symlink_or_hard_link_never_truncates_its_target(tmp_path):
  victim = tmp_path / "victim.txt"
  victim.write_text("precious")
  run = tmp_path / "run"
  run.mkdir()
  os.symlink("../victim.txt", run / ".pruning.lock")
  with pytest.raises(UserError, match="symlink"):
    with folder_lock(run):
      pass
  os.unlink(run / ".pruning.lock")
  os.link(victim, run / ".pruning.lock")
  with pytest.raises(UserError, match="not a pruning lock file"):
    with folder_lock(run):
      pass
  assert victim.read_text() == "precious"


@pytest.mark.slow
def test_a_file_output_is_refused_while_a_run_holds_its_folder(tmp_path):
  folder = tmp_path / "run"
  with lock_held_elsewhere(folder):
    with pytest.raises(UserError, match="holds"):
      with output_lock(folder / "manifest.parquet"):
        pass
  with output_lock(folder / "manifest.parquet"):  # free again once the run is gone
    pass


# --- 5. Corrupted .npz ---------------------------------------------------------------------------------------


def test_a_bit_flip_in_a_mapped_npz_member_is_refused(tmp_path):
  rng = np.random.default_rng(0)
  path = write_npz(tmp_path / "d.npz", x=rng.normal(size=(200, 8)).astype(np.float32), y=np.arange(200) % 2)
  with zipfile.ZipFile(path) as archive:
    info = archive.getinfo("x.npy")
  data = bytearray(path.read_bytes())
  data[info.header_offset + 30 + len("x.npy") + 300] ^= 0x10
  flipped = tmp_path / "flipped.npz"
  flipped.write_bytes(bytes(data))
  with pytest.raises(zipfile.BadZipFile):  # numpy agrees the file is corrupt
    np.load(flipped)["x"]
  with pytest.raises(UserError, match="CRC-32"):
    pruning.load_dataset(f"npz:{flipped}")


# --- 6. Concurrent writers and --overwrite -------------------------------------------------------------------


def test_a_file_that_appears_before_the_rename_is_never_replaced(tmp_path):
  target = tmp_path / "subset.parquet"
  with pytest.raises(UserError, match="appeared while"):
    with atomic_path(target, overwrite=False) as tmp:
      tmp.write_text("ours")
      target.write_text("theirs")
  assert target.read_text() == "theirs"
  assert [p.name for p in tmp_path.iterdir()] == ["subset.parquet"]


@pytest.mark.slow
def test_concurrent_selects_to_one_new_path_do_not_both_succeed(finished_run, tmp_path):
  command = ["select", finished_run / "manifest.parquet", "--keep", "0.5", "--out", tmp_path / "same.parquet"]
  for _ in range(3):
    (tmp_path / "same.parquet").unlink(missing_ok=True)
    jobs = [pruning_process(*command) for _ in range(2)]
    assert sorted(job.wait(timeout=120) for job in jobs) == [0, 2]


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
  import fcntl

  (tmp_path / ".out.parquet.dead1.tmp").write_text("left by a killed export")
  live = tmp_path / ".out.parquet.live1.tmp"
  live.write_text("being written")
  handle = open(live)
  fcntl.flock(handle, fcntl.LOCK_EX)
  try:
    with atomic_path(tmp_path / "out.parquet", overwrite=False) as tmp:
      tmp.write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.parquet.live1.tmp", "out.parquet"]
  finally:
    handle.close()


@pytest.mark.slow
def test_run_overwrite_clears_old_outputs_and_refuses_foreign_folders(run_copy, tmp_path, capsys):
  config = tmp_path / "other.yaml"
  config.write_text(TINY.replace("name: hard", "name: other"))
  assert main(["run", str(config), "--output", str(run_copy), "--overwrite", "--no-progress"]) == 0
  assert sorted(p.name for p in (run_copy / "subsets").iterdir()) == ["other.parquet", "rand.parquet"]
  assert main(["check", str(run_copy)]) == 0
  foreign = tmp_path / "home"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("mine")
  capsys.readouterr()
  one_line_error(*run_cli(["run", str(config), "--output", str(foreign), "--overwrite", "--no-progress"], capsys))
  assert tree(foreign) == {"notes.txt": b"mine"}


@pytest.mark.parametrize("planted", ["subsets", ".resume", ".resume/proxy", ".resume/arms", ".resume/config.json"])
def test_planted_symlinks_in_a_run_folder_are_refused_and_nothing_outside_changes(run_copy, tmp_path, capsys, planted):
  """A working folder (or the resume config) replaced by a link to the user's own files:
  with or without --overwrite, the run is refused in one line and the target is untouched."""
  config = tmp_path / "tiny.yaml"
  config.write_text(TINY)
  outside = tmp_path / "users_files"
  outside.mkdir()
  (outside / "hard.parquet").write_bytes(b"the user's own file")
  (outside / "config.json").write_bytes(b"{}")
  for overwrite in (["--overwrite"], []):
    folder = tmp_path / f"run{len(overwrite)}"
    shutil.copytree(run_copy, folder)
    if overwrite:  # a finished run being replaced
      target = folder / planted
    else:  # an unfinished one being resumed
      (folder / "run-record.json").unlink()
      (folder / ".resume").mkdir(exist_ok=True)
      (folder / ".resume" / "config.json").write_text(
        json.dumps(load_config(config).to_dict(), default=str, sort_keys=True)
      )
      target = folder / planted
    if target.is_dir() and not target.is_symlink():
      shutil.rmtree(target)
    elif target.exists():
      target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(outside / "config.json" if planted.endswith(".json") else outside)
    before = tree(outside)
    code, err = run_cli(["run", str(config), "--output", str(folder), *overwrite, "--no-progress"], capsys)
    one_line_error(code, err)
    assert "symlink" in err and planted.split("/")[-1] in err
    assert tree(outside) == before


def test_a_planted_symlink_as_a_score_jobs_resume_folder_is_refused(tmp_path, capsys):
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  (tmp_path / ".m.parquet.partial").symlink_to(outside)
  args = ["score", "--data", "digits", "--model", "linear", "--epochs", "1", "--seeds", "1", "--no-progress"]
  code, err = run_cli([*args, "--out", str(tmp_path / "m.parquet")], capsys)
  one_line_error(code, err)
  assert ".m.parquet.partial" in err and list(outside.iterdir()) == [] and not (tmp_path / "m.parquet").exists()


def test_a_planted_checkpoint_symlink_is_never_loaded_nor_its_target_removed(tmp_path):
  outside = tmp_path / "elsewhere"
  (outside / "keep").mkdir(parents=True)
  folder = tmp_path / "proxy"
  folder.mkdir()
  (folder / "epoch-000003").symlink_to(outside)
  checkpointer = TrainingCheckpointer(folder)
  assert checkpointer.latest_epoch() is None
  checkpointer.clear()
  assert (outside / "keep").is_dir()


def test_outputs_are_readable_as_the_umask_says(finished_run, tmp_path):
  old = os.umask(0o022)
  try:
    assert (
      main(["select", str(finished_run / "manifest.parquet"), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")])
      == 0
    )
  finally:
    os.umask(old)
  assert os.stat(tmp_path / "s.parquet").st_mode & 0o777 == 0o644
  assert (
    all(
      os.stat(p).st_mode & 0o777 == 0o644 for p in finished_run.rglob("*") if p.is_file() and p.name != ".pruning.lock"
    )
    or current_umask() != 0o022
  )


# --- 7. check finds every damage -----------------------------------------------------------------------------


def rewrite(path, change):
  """Edits a Parquet file the way a user with pyarrow would, keeping its metadata."""
  table = pq.read_table(path)
  frame = change(table.to_pandas())
  pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), path)


def keep_digest(path, change):
  """Edits a Parquet file and carries its digest over, as a careful forger would."""
  digest = pq.read_metadata(path).metadata[b"pruning.digest"]
  table = pq.read_table(path)
  edited = pa.Table.from_pandas(change(table.to_pandas()), preserve_index=False)
  with pq.ParquetWriter(path, edited.schema.with_metadata(table.schema.metadata)) as writer:
    writer.write_table(edited.replace_schema_metadata(table.schema.metadata))
    writer.add_key_value_metadata({b"pruning.digest": digest})


def raw_provenance(path, change):
  """Replaces the provenance metadata of a Parquet file directly (no digest)."""
  table = pq.read_table(path)
  provenance = json.loads(table.schema.metadata[b"pruning.provenance"])
  metadata = {**table.schema.metadata, b"pruning.provenance": json.dumps(change(provenance)).encode()}
  pq.write_table(table.replace_schema_metadata(metadata), path)


def resave(path, change_table=lambda t: t, change_provenance=lambda p: p):
  """Edits a manifest and writes it back through pruning (a valid digest)."""
  manifest = pruning.Manifest.read_parquet(path, verify=False)
  provenance = change_provenance(json.loads(json.dumps(manifest.provenance)))
  pruning.Manifest(change_table(manifest.table.copy()), provenance).to_parquet(path, overwrite=True)


def swap_one(table, manifest):
  kept = set(table["example_id"])
  outside = manifest.table[~manifest.table["example_id"].isin(kept)].iloc[:1]
  same_class = table[table["label"] == outside["label"].iloc[0]].index[0]
  table = pd.concat([table.drop(index=same_class), outside[table.columns]]).sort_values("index")
  return table.reset_index(drop=True)


DAMAGES = {
  "rows deleted": (lambda run: rewrite(run / "manifest.parquet", lambda f: f.iloc[100:]), "content digest"),
  "rows deleted through pruning": (
    lambda run: resave(run / "manifest.parquet", lambda t: t.iloc[100:].reset_index(drop=True)),
    "rows were deleted",
  ),
  "zero rows": (lambda run: resave(run / "manifest.parquet", lambda t: t.iloc[:0]), "rows were deleted"),
  "provenance only format": (
    lambda run: raw_provenance(run / "manifest.parquet", lambda p: {"format": p["format"]}),
    "no `dataset` record",
  ),
  "harder sideways": (
    lambda run: raw_provenance(
      run / "manifest.parquet", lambda p: {**p, "scores": {"el2n": {**p["scores"]["el2n"], "harder": "sideways"}}}
    ),
    "sideways",
  ),
  "num_classes ten": (
    lambda run: raw_provenance(
      run / "manifest.parquet", lambda p: {**p, "dataset": {**p["dataset"], "num_classes": "ten"}}
    ),
    "num_classes",
  ),
  "subset rows edited through pyarrow, digest kept": (
    lambda run: keep_digest(run / "subsets" / "hard.parquet", lambda f: f.assign(el2n=f["el2n"] * 2)),
    "changed after pruning wrote it",
  ),
  "subset example swapped": (
    lambda run: resave(
      run / "subsets" / "hard.parquet", lambda t: swap_one(t, pruning.Manifest.read_parquet(run / "manifest.parquet"))
    ),
    "not the ones the recorded selection keeps",
  ),
  "subset scores edited": (
    lambda run: rewrite(run / "subsets" / "hard.parquet", lambda f: f.assign(el2n=f["el2n"] * 2)),
    "content digest",
  ),
  "selection record edited": (
    lambda run: resave(
      run / "subsets" / "hard.parquet",
      change_provenance=lambda p: {**p, "selection": {**p["selection"], "strategy": "easiest"}},
    ),
    "selection record differs",
  ),
  "label edited": (
    lambda run: rewrite(
      run / "subsets" / "rand.parquet",
      lambda f: f.assign(label=np.where(np.arange(len(f)) == 0, (f["label"] + 1) % 10, f["label"])),
    ),
    "content digest",
  ),
  "results.parquet truncated": (
    lambda run: (run / "results.parquet").write_bytes((run / "results.parquet").read_bytes()[:300]),
    "results.parquet differs",
  ),
  "results.csv edited": (
    lambda run: (run / "results.csv").write_text((run / "results.csv").read_text().replace("0.", "0.9", 1)),
    "results.csv differs",
  ),
  "summary.csv deleted": (lambda run: (run / "summary.csv").unlink(), "summary.csv is missing"),
  "png deleted": (lambda run: (run / "kept_per_class.png").unlink(), "kept_per_class.png is missing"),
}


def test_a_subset_from_another_run_is_found(run_copy, tmp_path):
  other_config = tmp_path / "other.yaml"
  other_config.write_text(TINY.replace("keep: 0.3, class_rule", "keep: 0.2, class_rule"))
  assert main(["run", str(other_config), "--output", str(tmp_path / "other"), "--no-progress"]) == 0
  shutil.copy(tmp_path / "other" / "subsets" / "hard.parquet", run_copy / "subsets" / "hard.parquet")
  problems = pruning.jobs.check.check_path(run_copy)
  assert any("differs from what the run wrote" in p for p in problems), problems
  assert any("not the ones the recorded selection keeps" in p for p in problems), problems


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_check_finds_each_damage(run_copy, damage, capsys):
  change, message = DAMAGES[damage]
  assert main(["check", str(run_copy)]) == 0
  change(run_copy)
  capsys.readouterr()
  assert main(["check", str(run_copy)]) == 1
  out = capsys.readouterr().out
  assert message in out, out


def test_check_with_data_compares_ids_labels_and_fingerprint(finished_run, capsys):
  assert main(["check", str(finished_run / "manifest.parquet"), "--data", "digits"]) == 0
  capsys.readouterr()
  assert main(["check", str(finished_run / "manifest.parquet"), "--data", "digits", "--label-noise", "0.2"]) == 1
  assert "fingerprint" in capsys.readouterr().out


def test_training_on_a_subset_with_edited_labels_is_refused(run_copy, capsys):
  resave(
    run_copy / "subsets" / "rand.parquet",
    lambda t: t.assign(label=np.where(np.arange(len(t)) == 0, (t["label"] + 1) % 10, t["label"])),
    lambda p: {
      **p,
      "selection": {
        **p["selection"],
        "kept_per_class": np.bincount(
          pruning.Manifest.read_parquet(run_copy / "subsets" / "rand.parquet").table["label"], minlength=10
        ).tolist(),
      },
    },
  )
  code, err = run_cli(
    [
      "train",
      "--data",
      "digits",
      "--subset",
      str(run_copy / "subsets" / "rand.parquet"),
      "--epochs",
      "1",
      "--seeds",
      "1",
      "--no-progress",
    ],
    capsys,
  )
  one_line_error(code, err)
  assert "labels differ" in err


# --- Tracebacks that are now one line ------------------------------------------------------------------------


def test_cli_cases_that_once_gave_tracebacks(finished_run, tmp_path, capsys, monkeypatch):
  manifest = str(finished_run / "manifest.parquet")
  (tmp_path / "file").write_text("x")
  (tmp_path / "bytes.yaml").write_bytes(bytes(range(256)) * 4)
  (tmp_path / "seed.yaml").write_text(TINY + "dataset: {spec: digits, seed: -1}\n".replace("dataset", "x_dataset"))
  cases = [
    ["select", manifest, "--keep", "0.5", "--out", "/proc/x/y.parquet"],
    ["select", manifest, "--keep", "0.5", "--out", str(tmp_path / "file" / "x.parquet")],
    ["select", manifest, "--keep", "0.5", "--seed", "-1", "--out", str(tmp_path / "s.parquet")],
    [
      "select",
      manifest,
      "--keep",
      "0.5",
      "--strategy",
      "ccs",
      "--num-strata",
      "0",
      "--out",
      str(tmp_path / "s.parquet"),
    ],
    ["run", str(tmp_path / "bytes.yaml")],
    ["score", "--data", "digits", "--model-option", "hidden=[0]", "--out", str(tmp_path / "m.parquet")],
    [
      "score",
      "--data",
      "digits",
      "--model",
      "cnn",
      "--model-option",
      "channels=[0]",
      "--out",
      str(tmp_path / "m.parquet"),
    ],
    ["score", "--data", "digits", "--model-option", "hidden=[100000,100000]", "--out", str(tmp_path / "m.parquet")],
    ["score", "--data", "digits", "--seeds", str(2**70), "--out", str(tmp_path / "m.parquet")],
    ["score", "--data", "digits", "--seeds", "0,18446744073709551617", "--out", str(tmp_path / "m.parquet")],
    ["score", "--data", "digits", "--seeds", "100000", "--out", str(tmp_path / "m.parquet")],
    ["score", "--data", "digits", "--data-seed", "-1", "--out", str(tmp_path / "m.parquet")],
    ["score", "--data", "digits", "--epochs", "1000000000", "--out", str(tmp_path / "m.parquet")],
    [
      "export",
      str(finished_run / "subsets" / "hard.parquet"),
      "--data",
      "digits",
      "--rebalance",
      "1",
      "--seed",
      "-1",
      "--out",
      str(tmp_path / "e.npz"),
    ],
  ]
  for argv in cases:
    one_line_error(*run_cli(argv + (["--no-progress"] if argv[0] in ("score", "run") else []), capsys))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bytes.yaml", "file", "seed.yaml"]
  score = [
    "score",
    "--data",
    "digits",
    "--model",
    "linear",
    "--epochs",
    "1",
    "--seeds",
    "1",
    "--no-progress",
    "--out",
    str(tmp_path / "m.parquet"),
  ]
  for value in ("yesterday", str(10**20)):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    one_line_error(*run_cli(score, capsys))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["bytes.yaml", "file", "seed.yaml"]


@pytest.mark.parametrize(
  "raw, message",
  [
    ({"name": "x", "dataset": {"seed": -1}}, "seed"),
    ({"name": "x", "dataset": {"seed": "x"}}, "seed"),
    ({"name": "x", "training": {"momentum": "x"}}, "momentum"),
    ({"name": "x", "training": {"epochs": True}}, "epochs"),
    ({"name": "x", "model_options": [1]}, "model_options"),
    ({"name": "x", "selections": [{"name": 5, "keep": 0.5}]}, "must be a string"),
    ({"name": "x", "retrain": {"include_full": "no"}}, "include_full"),
    ({"name": "x", "proxy": {"seeds": [0, 2**32]}}, "seed"),
    ({"name": "x", "proxy": {"seeds": [0, 1.5]}}, "integers"),
    ({"name": "x", "selections": [{"name": "a", "keep": 0.5, "num_strata": 2**60, "strategy": "ccs"}]}, "num_strata"),
    ({"name": 5}, "name"),
  ],
)
def test_config_values_of_the_wrong_type_are_refused(raw, message):
  with pytest.raises(UserError, match=message):
    config = parse_config(raw)
    pruning.select(toy(), **config.selections[0].options())  # the ccs case fails only when selecting


def toy():
  from test_selection import toy_manifest

  return toy_manifest(np.repeat([0, 1], 20), np.linspace(0, 1, 40))


def test_yaml_aliases_and_repeated_keys_are_refused(tmp_path):
  bomb = tmp_path / "bomb.yaml"
  bomb.write_text(
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nname: x\n"
  )
  with pytest.raises(UserError, match="aliases"):
    load_config(bomb)
  twice = tmp_path / "twice.yaml"
  twice.write_text("name: x\ntraining: {epochs: 1}\ntraining: {epochs: 9}\n")
  with pytest.raises(UserError, match="appears twice"):
    load_config(twice)


def test_manifests_with_bad_provenance_or_no_rows_fail_cleanly(finished_run, tmp_path, capsys):
  path = tmp_path / "m.parquet"
  shutil.copy(finished_run / "manifest.parquet", path)
  resave(path, lambda t: t.iloc[:0])
  one_line_error(*run_cli(["select", str(path), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")], capsys))
  one_line_error(*run_cli(["report", str(path)], capsys))
  for change in (
    lambda p: {**p, "scores": list(p["scores"])},
    lambda p: {**p, "scores": {"el2n": {"harder": "higher"}}},
    lambda p: {**p, "dataset": "x"},
  ):
    shutil.copy(finished_run / "manifest.parquet", path)
    raw_provenance(path, change)
    one_line_error(*run_cli(["select", str(path), "--keep", "0.5", "--out", str(tmp_path / "s.parquet")], capsys))
  assert not (tmp_path / "s.parquet").exists()


def test_damaged_data_files_fail_cleanly(tmp_path):
  x, y = small_images(n=40, num_classes=2, shape=(3,))
  buffer = io.BytesIO()
  np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)})
  with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
    archive.writestr("x.npy", buffer.getvalue() + b"\0" * 64)
    label = io.BytesIO()
    np.save(label, y)
    archive.writestr("y.npy", label.getvalue())
  np.save(tmp_path / "plain.npy", x)
  os.replace(tmp_path / "plain.npy", tmp_path / "plain.npz")
  write_npz(tmp_path / "empty.npz", x=np.zeros((40, 0)), y=y)
  write_npz(tmp_path / "big.npz", x=np.full((40, 3), 1e300), y=y)
  write_npz(tmp_path / "unseen.npz", x=x, y=y, x_test=x[:3], y_test=np.array([0, 1, 5]))
  (tmp_path / "folder.npz").mkdir()
  expected = {
    "huge": "claims shape",
    "plain": "single .npy",
    "empty": "at least one feature",
    "big": "float32's range",
    "unseen": "no training example has",
    "folder": "is a folder",
  }
  for name, message in expected.items():
    with pytest.raises(UserError, match=message):
      pruning.load_dataset(f"npz:{tmp_path / name}.npz")
  frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": pd.Series(["u", "v"] * 19 + [None, "u"])})
  frame.to_parquet(tmp_path / "null.parquet")
  table = pa.table([pa.array(x[:, 0]), pa.array(x[:, 1]), pa.array(y)], names=["a", "a", "label"])
  pq.write_table(table, tmp_path / "dup.parquet")
  good = pa.Table.from_pandas(pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y}), preserve_index=False)
  for stream in (False, True):
    with pytest.raises(UserError, match="missing values"):
      pruning.load_dataset(f"parquet:{tmp_path / 'null.parquet'}", stream=stream)
    with pytest.raises(UserError):
      pruning.load_dataset(f"parquet:{tmp_path / 'dup.parquet'}", stream=stream)
    for metadata in (b"not json", b'"str"', b"[1.5, 2]", b"[-1, -2]", b"[[1], [2]]"):
      pq.write_table(good.replace_schema_metadata({b"pruning.feature_shape": metadata}), tmp_path / "meta.parquet")
      with pytest.raises(UserError, match="feature_shape"):
        pruning.load_dataset(f"parquet:{tmp_path / 'meta.parquet'}", stream=stream)
    damaged = bytearray((tmp_path / "null.parquet").read_bytes())
    damaged[60:160] = bytes(100)
    (tmp_path / "bad.parquet").write_bytes(bytes(damaged))
    with pytest.raises(UserError):
      pruning.load_dataset(f"parquet:{tmp_path / 'bad.parquet'}", stream=stream)


def test_export_ids_that_cannot_be_written_fail_cleanly_and_copies_never_collide(tmp_path):
  from pruning.export import copy_ids

  ids = np.array(["a", "a~rep1", "b"], dtype=object)
  copies = copy_ids(ids, np.array([0, 1, 2, 0, 0]))
  assert len(set(copies)) == 5 and list(copies[:3]) == ["a", "a~rep1", "b"]
  x, y = small_images(n=20, num_classes=2, shape=(4, 4, 1))
  for ids, fmt, message in (
    (["i" * 300] + [f"e{i}" for i in range(19)], "images", "longer than"),
    (["line\nbreak"] + [f"e{i}" for i in range(19)], "ids", "line break"),
  ):
    path = write_npz(tmp_path / "d.npz", x=x, y=y, id=np.array(ids))
    dataset = pruning.load_dataset(f"npz:{path}")
    manifest = pruning.score_dataset(
      dataset, model="linear", training=pruning.TrainConfig(epochs=1), seeds=[0], progress=False
    )
    with pytest.raises(UserError, match=message):
      pruning.export_subset(manifest, dataset, tmp_path / "out", format=fmt)
    assert not (tmp_path / "out").exists()


def test_a_character_device_output_is_never_replaced(finished_run, tmp_path, capsys):
  os.symlink("/dev/null", tmp_path / "devnull.parquet")
  one_line_error(
    *run_cli(
      [
        "select",
        str(finished_run / "manifest.parquet"),
        "--keep",
        "0.5",
        "--overwrite",
        "--out",
        str(tmp_path / "devnull.parquet"),
      ],
      capsys,
    )
  )
  assert os.path.islink(tmp_path / "devnull.parquet")


def test_a_keep_larger_than_the_data_is_refused_before_training(tmp_path, capsys):
  config = tmp_path / "big.yaml"
  config.write_text(TINY.replace("keep: 0.3, class_rule", "keep: 100000, class_rule"))
  code, err = run_cli(["run", str(config), "--output", str(tmp_path / "run"), "--no-progress"], capsys)
  one_line_error(code, err)
  assert "selection 'hard' keeps 100000" in err and "--keep" not in err
  assert not (tmp_path / "run").exists()  # a refused run leaves nothing, not even its resume config
  # so the corrected config runs in the same folder
  config.write_text(TINY)
  assert main(["run", str(config), "--output", str(tmp_path / "run"), "--no-progress"]) == 0


def test_an_output_that_is_an_input_is_refused_before_any_work(finished_run, tmp_path, capsys, monkeypatch):
  """`train --subset S --out S`, `flag M --suspects M`, `--out F --suspects F`, `select M --out M`,
  `merge P --out P`, figures over the subset: one line, before any training, the input unchanged."""
  import pruning.cli.commands as commands
  import pruning.cli.options as options

  def no_work(*args, **kwargs):
    raise AssertionError("work started before the outputs were checked")

  monkeypatch.setattr(commands, "retrain", no_work)
  monkeypatch.setattr(commands, "flag_label_issues", no_work)
  monkeypatch.setattr(options, "load_dataset_for", no_work)
  subset = tmp_path / "hard.parquet"
  shutil.copy(finished_run / "subsets" / "hard.parquet", subset)
  manifest = tmp_path / "m.parquet"
  shutil.copy(finished_run / "manifest.parquet", manifest)
  before = {subset: subset.read_bytes(), manifest: manifest.read_bytes()}
  (tmp_path / "figs").mkdir()
  (tmp_path / "figs" / "roc.png").write_bytes(b"an earlier figure")
  (tmp_path / "link.parquet").symlink_to(subset)
  cases = [
    ["train", "--subset", str(subset), "--out", str(subset), "--overwrite"],
    ["train", "--subset", str(subset), "--out", str(tmp_path / "link.parquet"), "--overwrite"],
    ["train", "--subset", str(subset), "--figures", str(tmp_path / "figs")],  # roc.png exists, no --overwrite
    ["flag", str(manifest), "--suspects", str(manifest), "--out", str(tmp_path / "f.parquet"), "--overwrite"],
    ["flag", str(manifest), "--out", str(manifest), "--overwrite"],
    ["flag", str(manifest), "--out", str(tmp_path / "f.parquet"), "--suspects", str(tmp_path / "f.parquet")],
    ["select", str(manifest), "--keep", "0.5", "--out", str(manifest), "--overwrite"],
    ["export", str(subset), "--format", "ids", "--out", str(subset), "--overwrite"],
    ["merge", str(manifest), "--out", str(manifest), "--overwrite"],
  ]
  for argv in cases:
    code, err = run_cli(argv, capsys)
    one_line_error(code, err)
  assert all(path.read_bytes() == data for path, data in before.items())
  assert not (tmp_path / "f.parquet").exists()


def test_work_that_cannot_fit_is_refused_up_front(monkeypatch, digits):
  monkeypatch.setattr("pruning.runtime.validation.available_memory", lambda: 2**30)
  with pytest.raises(UserError, match="needs about .* of memory"):
    pruning.score_dataset(
      digits,
      model="mlp",
      model_options={"hidden": [8192, 8192]},
      training=pruning.TrainConfig(epochs=1),
      seeds=range(4),
      progress=False,
    )


def test_attention_that_cannot_fit_is_refused_before_any_allocation(monkeypatch):
  """--max-length 16384 once passed the memory check (parameters only) and XLA then asked for 97 GiB:
  one example's attention over L tokens, 4 * 4 * heads * L^2 * layers bytes, is counted now."""
  from pruning.training.plan import plan_training

  monkeypatch.setattr("pruning.runtime.validation.available_memory", lambda: 2**30)
  options = {"hidden": 16, "heads": 4, "layers": 2, "mlp": 16, "vocab_size": 100, "max_positions": 4096}
  common = dict(num_classes=2, seeds=(0,), n=10, num_steps=1, per_epoch=1, kept_states=0, dynamics_window=None)
  with pytest.raises(UserError, match="attention over 4096 tokens, .* needs about 2.0 GiB .*lower --max-length"):
    plan_training("transformer", options, input_shape=(4096,), desc="proxy training", progress=False, **common)
  plan_training("transformer", options, input_shape=(512,), desc="proxy training", progress=False, **common)


def test_ccs_with_huge_strata_needs_no_huge_memory():
  import tracemalloc

  manifest = toy()
  tracemalloc.start()
  try:
    many = pruning.select(manifest, keep=10, strategy="ccs", num_strata=10**9, score="s", beta=0.1)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert many.selection["kept"] == 10 and peak < 50 * 2**20  # was 8 GiB: one counter per stratum
  # Only non-empty strata matter: as many strata as examples selects the same.
  same = pruning.select(manifest, keep=10, strategy="ccs", num_strata=10**9 + 1, score="s", beta=0.1)
  assert many.table["example_id"].tolist() == same.table["example_id"].tolist()


def test_every_training_job_prints_its_plan_first(digits, capsys, monkeypatch):
  monkeypatch.setattr("pruning.runtime.progress._enabled", True)  # whatever an earlier CLI call in this process set
  pruning.score_dataset(
    digits, model="linear", training=pruning.TrainConfig(epochs=2, batch_size=512), seeds=[0, 1], progress=True
  )
  plan = [line for line in capsys.readouterr().err.splitlines() if "examples x" in line]
  assert plan and "1437 examples x 2 seeds, 6 steps (2 epochs of 3), linear with 650 parameters" in plan[0]


def test_settings_that_once_passed_silently_or_as_divergence_are_refused(tmp_path, capsys):
  """Each once trained on (silently wrong, or reported as "training diverged"): now one line."""
  import pandas as pd

  from pruning.data.tokenizer import load_tokenizer

  code, err = run_cli(
    ["train", "--data", "digits", "--model", "linear", "--epochs", "1", "--seeds", "1", "--sampling-power", "0.5"],
    capsys,
  )
  one_line_error(code, err)
  assert "--sampling-power has no effect with remedy none: it goes with oversample" in err
  with pytest.raises(UserError, match="tau has no effect with remedy oversample"):
    parse_config({"name": "r", "retrain": {"remedy": "oversample", "remedy_options": {"tau": 2.0}}}, source="test")
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nword\n")
  (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": "false"}')
  with pytest.raises(UserError, match="do_lower_case is 'false', not true or false"):
    load_tokenizer(str(tmp_path))
  frame = pd.DataFrame({"text": ["a real sentence", "\u200b\u200b", "another one", "more"], "label": [0, 1, 0, 1]})
  frame.to_parquet(tmp_path / "t.parquet")
  with pytest.raises(UserError, match="row 1 is empty \\(or only spaces, zero-width or control characters\\)"):
    pruning.load_dataset(f"parquet:{tmp_path / 't.parquet'}")
  text = pruning.load_dataset("synthtext", vocab_size=200, max_length=16)
  for option, value, match in (("pad_id", 3, "contradicts the tokenizer's padding id"), ("vocab_size", 50, "below")):
    with pytest.raises(UserError, match=match):
      pruning.models.with_data_options("transformer", {option: value}, text)

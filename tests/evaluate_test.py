"""Quantization recipes and tools/evaluate: recipe strings, the perplexity code checked against
transformers' own loss, and the tool's JSON, table and plot."""

import json
import os
import pathlib
import re
import signal

import numpy as np
import pytest
import torch

from litezoo import pipeline
from litezoo.artifacts import files
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.quant import recipes
from litezoo.reference.reauthored import TorchDecoder
from litezoo.runtime import runner
from litezoo.tests import testing
from litezoo.tools import evaluate as evaluate_tool
from litezoo.tools.evaluation import perplexity as evaluate
from litezoo.tools.evaluation import report

SPEC = registry.Registry().get("tinyllama")
# What tools/evaluate converts for --window=64 on the tiny variant: prefill 32 (the plugin's
# lengths up to the window), a KV cache of 128, every position's logits.
EVALUATE_SIGNATURES = Signatures((32,), 128, prefill_logits="all")


# One fresh artifact cache for the module (autouse): CLI runs reuse the fixtures' float files.
module_artifact_cache = testing.module_artifact_cache


CONFIG = SPEC.variant("tiny").config


@pytest.mark.parametrize("text, name", [
    ("dynamic_int8", "dynamic_int8"),
    ("dynamic_int4_block32,embedding=int8", "dynamic_int4_block32,embedding=dynamic_int8"),
    ("dynamic_int4_block128, feedforward=int4 ,attention=dynamic_int8",
     "dynamic_int4_block128,attention=dynamic_int8,feedforward=dynamic_int4_block32"),
    ("none,feedforward=fp16", "none,feedforward=fp16"),
])
def test_recipe_strings_have_one_canonical_name(text, name):
  assert recipes.check(text) == name
  described = recipes.describe(text)
  assert described["name"] == name
  assert set(described["components"]) == set(recipes.COMPONENTS)


@pytest.mark.parametrize("text, message", [
    ("int3", "unknown quantization recipe 'int3'; valid recipes: none, fp16, dynamic_int8, "
     "weight_only_int8, dynamic_int4_block32, dynamic_int4_block64, dynamic_int4_block128, "
     "dynamic_int4_block256"),
    ("dynamic_int8,lm_tail=int8", "bad override 'lm_tail=int8' in 'dynamic_int8,lm_tail=int8': "
     "write component=recipe with a component among embedding, attention, feedforward"),
    ("dynamic_int8,embedding=int5", "unknown quantization recipe 'int5' for embedding"),
    ("dynamic_int8,embedding=int8,embedding=int4", "embedding is overridden twice"),
    ("dynamic_int8,attention=none", "attention=none: keeping one component float"),
])
def test_bad_recipe_strings_say_what_is_valid(text, message):
  with pytest.raises(recipes.UnknownRecipeError) as e:
    recipes.parse(text)
  assert message in str(e.value)


def test_perplexity_matches_transformers_loss(tmp_path):
  """The same text scored three ways: transformers' cross-entropy loss (the reference, computed
  by someone else), the zoo's PyTorch model, and the float .tflite through its KV cache."""
  weights = pipeline.weights(SPEC, "tiny", log=lambda _: None)
  original, model = pipeline.original_and_ours(SPEC, "tiny", weights, 128, log=lambda _: None)
  path = pipeline.artifact(SPEC, "tiny", weights, recipe="none", signatures=EVALUATE_SIGNATURES,
                           log=lambda _: None).path
  tokens = [int(t) for t in np.random.default_rng(0).integers(0, 256, 100)]
  window = 32  # 3 windows, the last 4 tokens dropped
  losses = []
  with torch.no_grad():
    for chunk in evaluate.windows(tokens, window):
      ids = torch.tensor([chunk])
      losses.append(float(original(ids, labels=ids).loss))  # mean over the window's 31 targets
  expected = float(np.exp(np.mean(losses)))
  baseline, scores = evaluate.evaluate(TorchDecoder(model, 128), {"none": runner.Runner(path)},
                                       tokens, window, progress=lambda _: None)
  assert baseline.tokens == scores["none"].tokens == 3 * 31
  assert baseline.perplexity == pytest.approx(expected, rel=1e-5)
  assert scores["none"].perplexity == pytest.approx(expected, rel=1e-5)
  assert scores["none"].top1_agreement == 1.0 and scores["none"].mean_kl < 1e-8


def test_windows_start_with_the_prefix_and_cover_the_text_once():
  text = list(range(10, 30))
  assert evaluate.windows(text, 6, prefix=[1]) == [[1, 10, 11, 12, 13, 14], [1, 15, 16, 17, 18, 19],
                                                   [1, 20, 21, 22, 23, 24], [1, 25, 26, 27, 28, 29]]
  assert evaluate.windows(text, 8) == [text[0:8], text[8:16]]


def test_cli_writes_json_table_and_plot(tmp_path):
  result = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", "--quantize=none",
                            "--quantize=dynamic_int4_block32,embedding=int8", "--window=64",
                            "--quantize=dynamic_int4_block32,embedding=dynamic_int8",
                            "--max_tokens=256", "--quantize=none", "--output_dir=out",
                            cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "window 4/4: perplexity float" in result.stderr
  assert "--quantize=none is given twice: measured once" in result.stderr
  # Two spellings of one recipe: one row, and the merge is said.
  assert ("--quantize=dynamic_int4_block32,embedding=dynamic_int8 is the same recipe as "
          "--quantize=dynamic_int4_block32,embedding=int8 (dynamic_int4_block32,embedding="
          "dynamic_int8): measured once") in result.stderr
  out = tmp_path / "out"
  report = json.loads((out / "tinyllama-tiny.json").read_text())
  assert report["tokens_scored"] == 4 * 63
  rows = {r["recipe"]: r for r in report["recipes"]}
  assert set(rows) == {"none", "dynamic_int4_block32,embedding=dynamic_int8"}
  float_row, mix = rows["none"], rows["dynamic_int4_block32,embedding=dynamic_int8"]
  assert float_row["perplexity"] == pytest.approx(report["float_perplexity"], rel=1e-4)
  assert float_row["top1_agreement"] == 1.0
  assert mix["size_bytes"] < float_row["size_bytes"]
  assert set(mix["weight_types"]) == {"INT4", "INT8"}  # the override really applied
  assert float_row["bits_per_weight"] > 32  # the file also holds the mask cache and metadata
  table = (out / "tinyllama-tiny.md").read_text()
  assert table.splitlines()[0].startswith("| tinyllama-tiny recipe | size (MiB) |")
  assert len(table.splitlines()) >= 4
  # llama.cpp is opt-in (not built in this test's cache): its rows are skipped, saying why.
  assert report["llamacpp"]["rows"] == []
  assert "tools/setup_llamacpp.sh" in report["llamacpp"]["skipped"]
  assert "No llama.cpp rows: llama.cpp's llama-quantize is not built" in table
  # Random weights: no quality targets (report_test checks those lines on real tables).
  assert "No quality targets: these are random weights" in table and "Targets" not in table
  assert (out / "tinyllama-tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_update_merges_new_rows_and_drops_stale_calibrated_ones(tmp_path):
  """--update re-measures only the named recipes: the table's other rows stay as they were, a
  calibrated row from another calibration is dropped, and other settings are refused."""
  common = ["--model=tinyllama", "--variant=tiny", "--window=64", "--max_tokens=128",
            "--output_dir=out"]
  first = testing.run_tool("evaluate", *common, "--quantize=none", "--quantize=dynamic_int8",
                           cwd=tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  path = tmp_path / "out" / "tinyllama-tiny.json"
  before = json.loads(path.read_text())
  stale = dict(before["recipes"][1], recipe="dynamic_int4_block32:gptq")  # no calibration recorded
  # llama.cpp is not built in this test's cache: rows an earlier run measured with it are kept.
  llama_row = {"recipe": "llama.cpp Q8_0", "engine": "llama.cpp", "size_bytes": 2 ** 20,
               "bits_per_weight": 8.5, "perplexity": 300.0, "perplexity_change": 0.01,
               "perplexity_stderr": 9.0, "tokens": 64, "top1_agreement": None, "mean_kl": None}
  path.write_text(json.dumps(dict(before, recipes=before["recipes"] + [stale],
                                  llamacpp=dict(before["llamacpp"], rows=[llama_row],
                                                skipped=None))))
  update = testing.run_tool("evaluate", *common, "--update",
                            "--quantize=dynamic_int4_block32:levels16", cwd=tmp_path)
  assert update.returncode == 0, update.stderr[-3000:]
  assert ("dropping dynamic_int4_block32:gptq: calibrated otherwise than the code calibrates "
          "now") in update.stderr
  after = json.loads(path.read_text())
  assert [r["recipe"] for r in after["recipes"]] == ["none", "dynamic_int8",
                                                     "dynamic_int4_block32:levels16"]
  assert after["recipes"][:2] == before["recipes"]  # kept, not measured again
  new = after["recipes"][2]
  assert new["perplexity_change"] == pytest.approx(
      new["perplexity"] / after["float_perplexity"] - 1)
  assert new["top1_agreement"] < 1.0 and set(new["weight_types"]) >= {"INT4"}
  assert after["dropped"] == {"dynamic_int4_block32:gptq": (
      "calibrated otherwise than the code calibrates now (quant/calibration.py); measure it "
      "again with --update")}
  table = (tmp_path / "out" / "tinyllama-tiny.md").read_text()
  assert "`dynamic_int4_block32:levels16`" in table and "`dynamic_int8`" in table
  assert ("`dynamic_int4_block32:gptq` was dropped from the table: calibrated otherwise than the "
          "code calibrates now") in table
  assert "| `dynamic_int4_block32:gptq`" not in table
  assert after["llamacpp"]["rows"] == [llama_row]
  assert "tools/setup_llamacpp.sh" in after["llamacpp"]["kept"]  # why they were kept
  assert "llama.cpp rows kept from" in update.stderr
  assert "| `llama.cpp Q8_0` | 1.0 | 8.50 | 300.000 | +1.00% |" in table
  assert "kept from the table this run updated, as llama.cpp did not run here" in table
  assert (after["max_tokens"], after["kv_cache_max_len"], after["task_sets"],
          after["task_limit"]) == (128, 128, [], 0)
  # Every setting the numbers depend on is checked before a model loads; so is the float model.
  # Through the tool for the one-line form; the other settings through the same check in-process
  # (a tool run costs seconds of imports).
  for args, message in [
      (["--window=32"], "tinyllama-tiny.json has window 64 and this run 32; give the "
       "same settings; run without --update to measure the whole table again"),
      (["--quantize=none", "--weights_seed=1"], "--update: the table's float_perplexity is "),
  ]:
    run = testing.run_tool("evaluate", *common, "--update", "--quantize=dynamic_int8", *args,
                           cwd=tmp_path)
    assert message in testing.one_line_error(run, "evaluate"), run.stderr[-2000:]
  run = testing.run_tool("evaluate", *common, "--update", cwd=tmp_path)
  assert testing.one_line_error(run, "evaluate") == (
      "evaluate: error: --update re-measures the --quantize recipes: name them")
  settings = {key: after[key] for key in evaluate_tool.SETTINGS}
  assert evaluate_tool._previous(path, settings) == after  # what the tool merged into above
  for change, message in [
      ({"max_tokens": 64}, "has max_tokens 128 and this run 64"),
      ({"kv_cache_max_len": 192}, "has kv_cache_max_len 128 and this run 192"),
      ({"task_sets": ["multiple_choice"]}, "has task_sets [] and this run ['multiple_choice']"),
      ({"task_limit": 2}, "has task_limit 0 and this run 2"),
      ({"text": "other.txt"}, "has text 'alice_in_wonderland.txt' and this run 'other.txt'"),
  ]:
    with pytest.raises(evaluate_tool.UpdateError, match=re.escape(message)):
      evaluate_tool._previous(path, dict(settings, **change))
  with pytest.raises(evaluate_tool.UpdateError, match="elsewhere/tinyllama-tiny.json to merge"):
    evaluate_tool._previous(tmp_path / "elsewhere" / "tinyllama-tiny.json", settings)
  assert json.loads(path.read_text()) == after  # refusals leave the table alone
  # A table evaluate did not write (or a hand-edited one) is refused in one line: through the
  # tool once, then each kind in-process.
  path.write_text(json.dumps(dict(after, recipes=after["recipes"] + [{"perplexity": 1.0}])))
  run = testing.run_tool("evaluate", *common, "--update", "--quantize=dynamic_int8", cwd=tmp_path)
  assert f"row 4 of {path} has no recipe name" in testing.one_line_error(run, "evaluate")
  for broken, message in [
      (dict(after, skipped=["dynamic_int8"]), "out/tinyllama-tiny.json is not a table evaluate "
       "wrote"),
      (dict(after, recipes=[dict(after["recipes"][1], recipe="dynamic_int3")]),
       "names a recipe this version cannot make, 'dynamic_int3' (unknown quantization recipe "
       "'dynamic_int3'"),
      (dict(after, recipes=[dict(after["recipes"][1], perplexity="high")]),
       "(dynamic_int8) has no valid perplexity: it is not a table evaluate wrote"),
      (dict(after, recipes=[{k: v for k, v in after["recipes"][1].items() if k != "size_bytes"}]),
       "has no valid size_bytes"),
      (dict(after, tasks=[1]), "tinyllama-tiny.json is not a table evaluate wrote"),
      (dict(after, tokens_scored="126"), "tinyllama-tiny.json is not a table evaluate wrote"),
      (dict(after, recipes=[dict(after["recipes"][1], recipe="dynamic_int8,embedding=int4")]),
       "names 'dynamic_int8,embedding=int4', which this version calls "
       "'dynamic_int8,embedding=dynamic_int4_block32': rename it in the table"),
  ]:
    path.write_text(json.dumps(broken))
    with pytest.raises(evaluate_tool.UpdateError) as e:
      evaluate_tool._previous(path, settings)
    assert message in str(e.value) and "\n" not in str(e.value)
  (tmp_path / "dir" / "tinyllama-tiny.png").mkdir(parents=True)
  run = testing.run_tool("evaluate", *common[:-1], "--output_dir=dir", cwd=tmp_path)
  assert testing.one_line_error(run, "evaluate").endswith(
      "dir/tinyllama-tiny.png is not a file: move it away or choose another --output_dir")


@pytest.fixture
def default_sigint():
  """Python's own Ctrl-C handler for the test, even where the test was started with SIGINT
  ignored (as a background job of a non-interactive shell is)."""
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def test_the_json_table_and_plot_are_written_all_or_none(tmp_path, monkeypatch, default_sigint):
  """Ctrl-C while plotting leaves the previous three files; Ctrl-C during the renames waits
  until all three are in place."""
  paths = [tmp_path / f"m{suffix}" for suffix in (".json", ".md", ".png")]
  for path in paths:
    path.write_text("old")
  rows = [{"recipe": "none", "engine": "zoo", "bits_per_weight": 32.0, "perplexity_change": 0.0}]

  def interrupted(*args):
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(report, "plot", interrupted)
    with pytest.raises(KeyboardInterrupt):
      evaluate_tool._write_together(paths, "m", {"new": 1}, "table", rows)
  assert [p.read_text() for p in paths] == ["old"] * 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.md", "m.png"]
  real_replace, renamed = os.replace, []

  def replace_then_interrupt(source, target):
    real_replace(source, target)
    renamed.append(pathlib.Path(target).name)
    if len(renamed) == 1:
      os.kill(os.getpid(), signal.SIGINT)

  with monkeypatch.context() as patch:
    patch.setattr(files.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
      evaluate_tool._write_together(paths, "m", {"new": 1}, "table", rows)
  assert sorted(renamed) == ["m.json", "m.md", "m.png"]
  assert json.loads(paths[0].read_text()) == {"new": 1}
  assert paths[1].read_text() == "table"
  assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.md", "m.png"]


@pytest.mark.parametrize("arg, message", [
    ("--window=1", "--window must be at least 2, got 1"),
    ("--max_tokens=-1", "--max_tokens must be at least 0, got -1"),
    ("--threads=0", "--threads must be at least 1, got 0"),
    # Found by a trial: these were tracebacks (or refusals after the conversion) until checked
    # against the model's 2048-token context and the text before any model loads.
    ("--window=4096", "--window=4096 is longer than the 2048-token context of tinyllama-tiny: "
     "use --window=2048 or less"),
    ("--kv_cache_max_len=4096", "kv cache length 4096 exceeds the 2048-token context of "
     "tinyllama-tiny; pass --kv_cache_max_len=2048 or less"),
    ("--max_tokens=10", "10 tokens of alice_in_wonderland.txt to score (--max_tokens=10 kept that "
     "many): fewer than one --window of 256; lower --window or raise --max_tokens"),
    ("--output_dir=", "--output_dir is empty: give a directory (. for the current one), or leave "
     "the flag out"),
])
def test_each_bad_flag_is_named_alone(arg, message):
  run = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", arg)
  assert testing.one_line_error(run, "evaluate") == f"evaluate: error: {message}"


def test_a_refusal_after_the_output_dir_was_made_leaves_no_directory(tmp_path):
  run = testing.run_tool("evaluate", "--model=tinyllama", "--variant=tiny", "--window=64",
                         "--kv_cache_max_len=32", "--output_dir=new/out", cwd=tmp_path)
  assert testing.one_line_error(run, "evaluate") == (
      "evaluate: error: --kv_cache_max_len=32 is shorter than --window")
  assert list(tmp_path.iterdir()) == []  # neither out nor its new parent stays behind



def test_targets_say_met_or_missed_by_how_much():
  """The issue's targets against hand-made rows: the best zoo row of each kind, llama.cpp's
  rows compared only with zoo rows of no more bits/weight."""
  row = lambda recipe, change, bits, top1=None: {
      "recipe": recipe, "perplexity_change": change, "bits_per_weight": bits,
      "top1_agreement": top1}
  rows = [row("none", 0.0, 32.0, 1.0), row("dynamic_int8", 0.02, 8.6, 0.90),
          row("dynamic_int8:gptq:hadamard", 0.005, 8.6, 0.94),
          row("dynamic_int4_block32", 0.50, 4.5), row("dynamic_int4_channel:gptq", 0.12, 4.2)]
  llama = [row("llama.cpp Q8_0", 0.004, 8.5), row("llama.cpp Q4_0", 0.20, 4.5),
           row("llama.cpp Q4_K_M", 0.05, 4.1)]
  assert report.targets(rows, llama).splitlines()[2:] == [
      "- int8 within +1% of float and top-1 >= 95%: `dynamic_int8:gptq:hadamard` +0.50%, top-1 "
      "94.00%: missed, top-1 by 1.00 pt",
      "- 4-bit within +10% of float: `dynamic_int4_channel:gptq` +12.00%: missed by 2.0 pt",
      "- 4-bit better than llama.cpp Q4_0 at no more bits/weight (+20.00% at 4.50): "
      "`dynamic_int4_channel:gptq` +12.00% at 4.20: met",
      "- 4-bit as good as llama.cpp Q4_K_M (stretch) at no more bits/weight (4.10): no zoo 4-bit "
      "row that small",
      "- int8 as good as llama.cpp Q8_0 (+0.40%): `dynamic_int8:gptq:hadamard` +0.50%: missed by "
      "0.10 pt"]
  assert report.targets(rows[:1], llama) == ""  # the float model alone: nothing to report

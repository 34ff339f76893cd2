"""Measures what each quantization recipe costs in quality, for any registered model.

  bazel run //tools:evaluate -- --model=smollm2 --quantize=dynamic_int8
  bazel run //tools:evaluate -- --model=smollm2          # every named recipe and an override mix

Perplexity on a public-domain English text shipped in the repo (quant/data), through each converted
.tflite with its KV cache, against the float PyTorch model; top-1 agreement and mean KL divergence of
next-token distributions; file size and bits per weight. When llama.cpp is built
(tools/setup_llamacpp.sh) and the weights are a GGUF, llama.cpp's F16/Q8_0/Q4_0/Q4_K_M of the same
file join the table (tools/evaluation/llamacpp.py). Writes JSON, a markdown table with the
project's quality targets and by how much each is missed, and a plot.

`--tasks=all` (or task names, or paths of .jsonl files) adds accuracy on the offline task sets of
quant/data/tasks (multiple choice by lm-eval's log-likelihood method, short answers by greedy
generation; tools/evaluation/tasks.py) for the float PyTorch model and each recipe's .tflite, and
with `--tasks_litertlm` for each recipe's .litertlm in Google's LiteRT-LM engine too:

  bazel run //tools:evaluate -- --model=smollm2 --quantize=dynamic_int8 --tasks=all

`--update` measures only the `--quantize` recipes and merges their rows into the table already in
`--output_dir` (the same text, window, tokens, tasks and KV cache length, checked before any
model loads), so a change to one algorithm re-measures its rows, not the hour of the whole table:

  bazel run //tools:evaluate -- --model=smollm2 --tasks=all --max_tokens=1024 \
      --output_dir=docs/quality --update --quantize=dynamic_int4_block32:gptq
"""

import contextlib
import datetime
import json
import math
import pathlib
import signal
import tempfile

from absl import flags

from litezoo import pipeline
from litezoo.artifacts import files
from litezoo.core.errors import ZooError
from litezoo.artifacts.manifest import versions
from litezoo.core.spec import Signatures
from litezoo.quant import calibration, recipes
from litezoo.runtime import runner
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags
from litezoo.tools.evaluation import llamacpp, perplexity, report, tasks

TEXT = pathlib.Path(recipes.__file__).resolve().parent / "data" / "alice_in_wonderland.txt"
# The named recipes worth a row, and the options that improve them (docs/quality.md). fp16 is left
# out: float16 weights score as float32 (+0.00%, 2026-11-27) and the quantizer's float-casting
# pass takes minutes.
DEFAULT_RECIPES = [
    "none", "weight_only_int8", "dynamic_int8", "dynamic_int8:octav",
    "dynamic_int8:hadamard", "dynamic_int8:gptq:hadamard", "dynamic_int4_block32",
    "dynamic_int4_block32,embedding=int8",
    "dynamic_int4_block32:octav,embedding=int8", "dynamic_int4_block32:levels16,embedding=int8",
    "dynamic_int4_block128:levels16,embedding=int8", "dynamic_int4_block32:gptq",
    "dynamic_int4_block32:gptq,embedding=int8", "dynamic_int4_block32:gptq,down_proj=int8",
    "dynamic_int4_block32:gptq,embedding=int8,down_proj=int8",
]

_SELECT = zoo_flags.define(recipe=False, signatures=False)
_QUANTIZE = flags.DEFINE_multi_string("quantize", None, "Recipe(s) to evaluate; repeat the flag "
                                      "for several (default: every named recipe and two mixes).")
_WINDOW = flags.DEFINE_integer("window", 256, "Tokens per scored window.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 8192, "Score this many tokens of the text "
                                   "(0: all of it).")
_KV_LEN = flags.DEFINE_integer("kv_cache_max_len", 0, "KV cache length of the evaluated files "
                               "(default: the window, at least 128, and room for the longest "
                               "--tasks prompt); scores do not depend on it.")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads for LiteRT.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "eval", "Where the JSON, table and plot go.")
_TASKS = flags.DEFINE_list(
    "tasks", None, "Also score these offline task sets on the float model and every recipe: "
    f"names in quant/data/tasks ({', '.join(tasks.available())}), `all`, or paths of .jsonl "
    "files (format: quant/data/tasks/README.md).")
_TASK_LIMIT = flags.DEFINE_integer("task_limit", 0, "With --tasks: score the first N items of "
                                   "each task (0: all of them).")
_TASKS_LITERTLM = flags.DEFINE_bool(
    "tasks_litertlm", False, "With --tasks: also bundle each recipe's .tflite as a .litertlm "
    "and score the tasks in Google's LiteRT-LM engine, as a user's engine runs the file (its "
    "default CPU activations).")
_UPDATE = flags.DEFINE_bool(
    "update", False, "Measure only the --quantize recipes and merge their rows into the JSON "
    "already in --output_dir, keeping its other rows (a calibrated recipe's row only if it was "
    "calibrated as the code calibrates now); the settings must be that file's.")


class UpdateError(ZooError, ValueError):
  pass


def _previous(path: pathlib.Path, settings: dict) -> dict:
  """The table `--update` merges into, checked against this run's `settings` (before any model
  is loaded) and read as evaluate writes it: every row names a recipe this version can make.
  Raises UpdateError."""
  again = "; run without --update to measure the whole table again"
  if not path.is_file():
    raise UpdateError(f"--update: there is no {path} to merge into{again}")
  try:
    previous = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise UpdateError(f"--update: {path} is not a table evaluate wrote ({e}){again}") from e
  skipped = previous.get("skipped", {}) if isinstance(previous, dict) else None
  task_info = previous.get("tasks") if isinstance(previous, dict) else None
  if (not isinstance(previous, dict) or not isinstance(previous.get("recipes"), list)
      or not (task_info is None or isinstance(task_info, dict))
      or not isinstance(skipped, dict) or not all(isinstance(v, str) for v in skipped.values())
      or not _numbers(previous, ("tokens_scored", "float_perplexity"))
      or not _task_scores((task_info or {}).get("float"))):
    raise UpdateError(f"--update: {path} is not a table evaluate wrote{again}")
  for i, row in enumerate(previous["recipes"]):
    where = f"row {i + 1} of {path}"
    if not isinstance(row, dict) or not isinstance(row.get("recipe"), str):
      raise UpdateError(f"--update: {where} has no recipe name: it is not a table evaluate "
                        f"wrote{again}")
    bad = [key for key in ROW_NUMBERS if not _numbers(row, (key,))] + [
        key for key in ("top1_agreement", "mean_kl")
        if row.get(key) is not None and not _numbers(row, (key,))] + [
        key for key in ("tasks", "tasks_litertlm") if not _task_scores(row.get(key))]
    if bad:
      raise UpdateError(f"--update: {where} ({row['recipe']}) has no valid {', '.join(bad)}: it "
                        f"is not a table evaluate wrote{again}")
    try:
      canonical = recipes.check(row["recipe"])
    except recipes.UnknownRecipeError as e:
      raise UpdateError(f"--update: {path} names a recipe this version cannot make, "
                        f"{row['recipe']!r} ({e}){again}") from e
    if canonical != row["recipe"]:
      raise UpdateError(f"--update: {where} names {row['recipe']!r}, which this version calls "
                        f"{canonical!r}: rename it in the table")
  for key, value in settings.items():
    if previous.get(key) != value:
      raise UpdateError(f"--update: {path} has {key} {previous.get(key)!r} and this run "
                        f"{value!r}; give the same settings{again}")
  return previous


# What a table's numbers depend on (sizes on the KV length too): --update must match them.
SETTINGS = ("model", "variant", "text", "window", "max_tokens", "task_sets", "task_limit",
            "kv_cache_max_len")
# What a table's row must hold for the markdown table and plot to be written from it.
ROW_NUMBERS = ("size_bytes", "bits_per_weight", "perplexity", "perplexity_change")


def _numbers(mapping: dict, keys) -> bool:
  return all(isinstance(mapping.get(k), (int, float)) and not isinstance(mapping.get(k), bool)
             for k in keys)


def _task_scores(scores) -> bool:
  """Whether `scores` is absent or maps task names to results with a numeric accuracy."""
  return scores is None or (isinstance(scores, dict) and all(
      isinstance(r, dict) and _numbers(r, ("accuracy",)) for r in scores.values()))


def _merged(previous: dict, rows: list[dict], result: dict, dropped: dict) -> list[dict]:
  """`previous`'s rows with this run's in their place (new recipes at the end); rows of calibrated
  recipes whose calibration is not today's are dropped as stale, with the reason in `dropped`.
  Raises UpdateError when the float baseline differs (another float model or text)."""
  for key in ("tokens_scored", "float_perplexity"):
    if not (isinstance(previous.get(key), (int, float))
            and math.isclose(previous[key], result[key], rel_tol=1e-6)):
      raise UpdateError(f"--update: the table's {key} is {previous.get(key)!r} and this run's "
                        f"{result[key]!r}: the float model or the text changed; run without "
                        "--update to measure the whole table again")
  old_tasks = (previous.get("tasks") or {}).get("float")
  new_tasks = (result.get("tasks") or {}).get("float")
  if old_tasks != new_tasks:
    raise UpdateError("--update: the float model's task results differ from the table's (other "
                      "tasks, limit or model); run without --update to measure it all again")
  fresh = {r["recipe"]: r for r in rows}
  merged = []
  for row in previous["recipes"]:
    if row["recipe"] in fresh:
      merged.append(fresh.pop(row["recipe"]))
    elif recipes.calibrated(row["recipe"]) and row.get("calibration") != calibration.identity():
      dropped[row["recipe"]] = ("calibrated otherwise than the code calibrates now "
                                "(quant/calibration.py); measure it again with --update")
      console.log(f"dropping {row['recipe']}: {dropped[row['recipe']]}")
    else:
      merged.append(row)
  return merged + list(fresh.values())


def main(argv):
  del argv
  for name, value, least in (("window", _WINDOW.value, 2), ("max_tokens", _MAX_TOKENS.value, 0)):
    if value < least:
      raise zoo_flags.FlagError(f"--{name} must be at least {least}, got {value}")
  zoo_flags.check_threads(_THREADS.value)
  if _TASKS.value is None:
    for name in ("task_limit", "tasks_litertlm"):
      if flags.FLAGS[name].present:
        raise zoo_flags.FlagError(f"--{name} applies to --tasks, which is not given")
  elif not _TASKS.value:
    raise zoo_flags.FlagError("--tasks is empty: name tasks ("
                              f"{', '.join(tasks.available())}), all, or .jsonl files")
  if _TASK_LIMIT.value < 0:
    raise zoo_flags.FlagError(f"--task_limit must be at least 0, got {_TASK_LIMIT.value}")
  # Read and checked before any model is loaded: a bad line fails in a second.
  task_list = [t.limited(_TASK_LIMIT.value)
               for t in tasks.resolve(_TASKS.value or [], common.user_path)]
  if _UPDATE.value and not _QUANTIZE.value:
    raise zoo_flags.FlagError("--update re-measures the --quantize recipes: name them")
  if any(not r.strip() for r in _QUANTIZE.value or []):
    raise zoo_flags.FlagError("--quantize is empty: give a recipe (e.g. dynamic_int8), or leave "
                              "the flag out for every named recipe")
  s = _SELECT.selection()
  written = {}  # canonical name -> as the user wrote it, for refusals
  for text in _QUANTIZE.value or DEFAULT_RECIPES:
    canonical = recipes.check(text)
    if canonical in written:  # one row: said, not merged silently
      console.log(f"--quantize={text} is given twice: measured once" if text == written[canonical]
                  else f"--quantize={text} is the same recipe as --quantize={written[canonical]} "
                  f"({canonical}): measured once")
    written.setdefault(canonical, text)
  chosen = list(written)
  out = zoo_flags.output_dir(_OUTPUT_DIR)
  outputs = [out / f"{s.name}{suffix}" for suffix in (".json", ".md", ".png")]
  for path in outputs:  # found now, not after an hour of measuring
    if path.exists() and not path.is_file():
      raise files.OutputError(f"{path} is not a file: move it away or choose another "
                              "--output_dir")
  context = s.spec.variant(s.variant).config.get("max_position_embeddings")
  if context and _WINDOW.value > context:
    raise zoo_flags.FlagError(f"--window={_WINDOW.value} is longer than the {context}-token "
                              f"context of {s.name}: use --window={context} or less")
  kv_len = _KV_LEN.value or min(max(_WINDOW.value, 128), context or 128)
  if kv_len < _WINDOW.value:
    raise zoo_flags.FlagError(f"--kv_cache_max_len={kv_len} is shorter than --window")
  tok = pipeline.tokenizer(s.weights, console.log)
  if task_list:
    needed = tasks.tokens_needed(task_list, tok)
    if _KV_LEN.value and kv_len < needed:
      raise zoo_flags.FlagError(f"--kv_cache_max_len={kv_len} cannot hold the longest task "
                                f"prompt with its answer ({needed} tokens): raise it or leave it "
                                "out")
    if context and needed > context:
      raise zoo_flags.FlagError(f"the longest task prompt with its answer needs {needed} tokens, "
                                f"more than the {context}-token context of {s.name}: shorten it "
                                "or leave its task set out")
    kv_len = max(kv_len, -(-needed // 64) * 64)
    if context:
      kv_len = min(kv_len, context)  # rounding up must not pass it (the window is within it)
  settings = dict(zip(SETTINGS, (s.spec.name, s.variant, TEXT.name, _WINDOW.value,
                                 _MAX_TOKENS.value, [t.name for t in task_list],
                                 _TASK_LIMIT.value, kv_len)))
  previous = _previous(outputs[0], settings) if _UPDATE.value else None
  # Scoring reads every position: prefill returns them all (one call per window).
  signatures = Signatures(tuple(n for n in s.spec.signatures.prefill_seq_lens
                                if n <= _WINDOW.value) or (_WINDOW.value,), kv_len,
                          prefill_logits="all")
  s.spec.check_signatures(s.variant, signatures)  # a KV cache past the model's context
  # The text in tokens, and whether it fills a window, before any conversion.
  tokens = tok.encode(TEXT.read_text())
  prefix = []
  if tok.bos_id is not None and tokens[:1] == [tok.bos_id]:
    prefix, tokens = tokens[:1], tokens[1:]  # BOS starts every window, not just the first
  if _MAX_TOKENS.value:
    tokens = tokens[:_MAX_TOKENS.value]
  if not perplexity.windows(tokens, _WINDOW.value, prefix):
    cut = f" (--max_tokens={_MAX_TOKENS.value} kept that many)" if _MAX_TOKENS.value else ""
    raise zoo_flags.FlagError(f"{len(tokens)} tokens of {TEXT.name} to score{cut}: fewer than "
                              f"one --window of {_WINDOW.value}; lower --window or raise "
                              "--max_tokens")
  from litezoo.conversion import export  # pylint: disable=g-import-not-at-top
  skipped = {}
  # Refused or skipped in seconds, before any model loads.
  refused = pipeline.check_recipes(s.spec, s.variant, s.weights,
                                   [r for r in chosen if r != "none"], signatures, console.log)
  for recipe, e in refused.items():
    if _QUANTIZE.value:  # asked for by name: refused, not left out of the table
      raise export.QuantizeError(f"--quantize={written[recipe]}: {e}") from e
    skipped[recipe] = str(e.__cause__ or e)  # the reason, without "cannot be applied" twice
    console.log(f"skipping {recipe}: {skipped[recipe]}")
  chosen = [r for r in chosen if r not in skipped]
  # pylint: disable=g-import-not-at-top  (torch and the converter take seconds to import)
  from litezoo.reference.reauthored import TorchDecoder
  _, model = pipeline.original_and_ours(s.spec, s.variant, s.weights,
                                        signatures.kv_cache_max_len, console.log)
  artifacts, runners = {}, {}
  for recipe in chosen:
    try:
      artifacts[recipe] = pipeline.artifact(s.spec, s.variant, s.weights, recipe=recipe,
                                            signatures=signatures, log=console.log)
    except export.QuantizeError as e:  # e.g. block size not dividing this model's dimensions
      console.log(f"skipping {recipe}: {e}")
      skipped[recipe] = str(e)
      continue
    runners[recipe] = runner.Runner(artifacts[recipe].path, num_threads=_THREADS.value)
  console.log(f"scoring {len(tokens)} tokens of {TEXT.name} in windows of {_WINDOW.value}")
  baseline, scores = perplexity.evaluate(TorchDecoder(model, signatures.kv_cache_max_len),
                                         runners, tokens, _WINDOW.value, progress=console.log,
                                         prefix=prefix)
  float_tasks, task_rows, litertlm_skipped, litertlm_failed = {}, {}, None, {}
  if task_list:
    float_tasks = tasks.score(tasks.DecoderBackend(
        TorchDecoder(model, signatures.kv_cache_max_len), tok), task_list, "float", console.log)
    for recipe, run in runners.items():
      task_rows[recipe] = {"tasks": tasks.score(tasks.DecoderBackend(run, tok), task_list, recipe,
                                                console.log)}
    if _TASKS_LITERTLM.value:
      litertlm_skipped = _score_litertlm(s, artifacts, tok, task_list, task_rows,
                                         litertlm_failed)
  params = sum(p.numel() for p in model.parameters())
  rows = []
  for recipe, score in scores.items():
    manifest = artifacts[recipe].manifest
    rows.append({
        "recipe": recipe, "engine": "zoo", "size_bytes": manifest.size_bytes,
        "bits_per_weight": manifest.size_bytes * 8 / params,
        "weight_types": manifest.weights.get("params_by_type", {}),
        "perplexity": score.perplexity,
        "perplexity_change": score.perplexity / baseline.perplexity - 1,
        "top1_agreement": score.top1_agreement, "mean_kl": score.mean_kl,
        "tokens": score.tokens,
        "measured_on": datetime.date.today().isoformat(),
        **({"calibration": manifest.recipe["calibration"]}
           if "calibration" in manifest.recipe else {}),
    })
    for key, results in task_rows.get(recipe, {}).items():
      rows[-1][key] = {n: r.to_json(float_tasks[n]) for n, r in results.items()}
  chunks = max(1, len(tokens) // _WINDOW.value)  # as much of the text as the zoo's rows
  kept = None  # why the table's llama.cpp rows were kept
  try:
    llama_rows = llamacpp.evaluate(s.weights.path, TEXT, _WINDOW.value, chunks, _THREADS.value,
                                   params, console.log)
    llama_skipped = None
  except llamacpp.Skipped as e:
    llama_rows, llama_skipped = [], str(e)
    earlier = (previous or {}).get("llamacpp") or {}
    if earlier.get("rows") and earlier.get("chunks") == chunks:
      # --update re-measures the named recipes only; llama.cpp's rows score the same GGUF on
      # the same text whatever the zoo's recipes are, so the table's stand.
      llama_rows, llama_skipped, kept = earlier["rows"], None, str(e)
      console.log(f"llama.cpp rows kept from {outputs[0]} (llama.cpp did not run: {e})")
    else:
      console.log(f"no llama.cpp rows: {e}" + (
          f"; the table's scored {earlier.get('chunks')} chunks, this run {chunks}: dropped"
          if earlier.get("rows") else ""))
  name = s.name
  result = {**settings, "tokens_scored": baseline.tokens, "parameters": params,
            "float_perplexity": baseline.perplexity, "recipes": rows, "skipped": skipped,
            "llamacpp": {"rows": llama_rows, "chunks": chunks, "skipped": llama_skipped,
                         **({"kept": kept} if kept else {})},
            "versions": versions()}
  if task_list:
    result["tasks"] = {
        "files": {t.name: _shown(t.path) for t in task_list}, "limit": _TASK_LIMIT.value,
        "float": {n: r.to_json() for n, r in float_tasks.items()},
        "litertlm": (None if not _TASKS_LITERTLM.value else
                     {"skipped": litertlm_skipped, "failed": litertlm_failed,
                      "activations": "the engine's CPU default"})}
  if previous is not None:
    dropped = {}
    rows = result["recipes"] = _merged(previous, rows, result, dropped)
    result["skipped"] = {**{r: why for r, why in previous.get("skipped", {}).items()
                            if r not in chosen}, **skipped}
    if dropped:
      result["dropped"] = dropped
  markdown = (f"{report.table(name, rows + llama_rows, result.get('tasks'))}\n\nPyTorch float32 "
              f"perplexity {baseline.perplexity:.3f} over {baseline.tokens} scored tokens "
              f"({TEXT.name}, windows of {_WINDOW.value}).\n")
  if llama_rows:
    markdown += (f"\nllama.cpp rows: `llama-quantize` of the same GGUF, `llama-perplexity -c "
                 f"{_WINDOW.value} --chunks {chunks}` on the same text, each relative to llama.cpp's "
                 f"F16 (perplexity {llama_rows[0]['perplexity']:.3f}; llama-perplexity scores the "
                 "second half of each chunk, so only the changes compare)" +
                 (", kept from the table this run updated, as llama.cpp did not run here"
                  if kept else "") + ".\n")
  else:
    markdown += f"\nNo llama.cpp rows: {llama_skipped}\n"
  if task_list:
    markdown += report.task_notes(result["tasks"])
  if s.weights.is_random:  # the targets are about real models' quality
    markdown += ("\nNo quality targets: these are random weights, whose scores say whether the "
                 "pipeline works, not what a recipe costs a trained model.\n")
  else:
    markdown += report.targets(rows, llama_rows)
  for recipe, reason in result["skipped"].items():
    markdown += f"\n`{recipe}` skipped: {reason}\n"
  for recipe, reason in result.get("dropped", {}).items():
    markdown += f"\n`{recipe}` was dropped from the table: {reason}\n"
  _write_together(outputs, name, result, markdown, rows + llama_rows)
  console.out(markdown)
  console.out(f"wrote {out / name}.json, .md and .png")
  return 0


@contextlib.contextmanager
def _signals_held():
  """Holds SIGINT and SIGTERM for the block, then delivers the first that came."""
  caught = []
  held = (signal.SIGINT, signal.SIGTERM)
  before = {n: signal.signal(n, lambda number, frame: caught.append(number)) for n in held}
  try:
    yield
  finally:
    for number, handler in before.items():
      signal.signal(number, handler)
    if caught:
      signal.raise_signal(caught[0])


def _write_together(paths: list[pathlib.Path], name: str, result: dict, markdown: str,
                    rows: list[dict]) -> None:
  """Writes the JSON, the markdown table and the plot (`paths`, in that order) all or none: each
  goes to a temp file, and the three renames run with SIGINT and SIGTERM held, so Ctrl-C while
  plotting leaves the previous three as they were (only a rename the OS refuses, e.g. a
  directory made at a path meanwhile, can leave them mixed). Raises files.OutputError."""
  try:
    with contextlib.ExitStack() as signals:
      with contextlib.ExitStack() as renames:
        json_tmp, md_tmp, png_tmp = (renames.enter_context(files.atomic_path(p)) for p in paths)
        json_tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        md_tmp.write_text(markdown)
        report.plot(name, rows, png_tmp)
        signals.enter_context(_signals_held())  # released once every rename is done
  except OSError as e:
    target = e.filename2 or e.filename or f"{paths[0].with_name(name)}.json, .md and .png"
    raise files.OutputError(f"could not write {target} ({e.strerror or e}); if a rename failed, "
                            "the .json, .md and .png may now be from different runs: fix that "
                            "path and run again") from e


def _shown(path) -> str:
  """A task file's path as the JSON records it: relative to the zoo for a shipped one."""
  try:
    return str(path.relative_to(tasks.TASKS_DIR.parents[2]))
  except ValueError:
    return str(path)


def _score_litertlm(s, artifacts, tok, task_list, task_rows, failed) -> str | None:
  """Scores the tasks on each recipe's .litertlm (written to a temp dir, one at a time) in
  LiteRT-LM's engine, into task_rows[recipe]["tasks_litertlm"]; a recipe whose file could not be
  written or run gets the reason in `failed`. Returns why none ran (no engine, no bundle for this
  model), or None."""
  from litezoo.artifacts import bundle  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="litezoo-tasks-") as scratch:
    for recipe in task_rows:
      try:
        path = bundle.write_bundles(artifacts[recipe], tok, s.weights.path, pathlib.Path(scratch),
                                    formats=("litertlm",),
                                    litertlm_type=s.spec.family.litertlm_type,
                                    log=console.log)["litertlm"]
      except bundle.BundleError as e:  # the tokenizer, the same for every recipe
        console.log(f"no LiteRT-LM task scores: {e}")
        return f"the .litertlm could not be written: {e}"
      try:
        backend = tasks.LiteRTLMBackend(path, threads=_THREADS.value)
        task_rows[recipe]["tasks_litertlm"] = tasks.score(backend, task_list,
                                                          f"{recipe} .litertlm", console.log)
        del backend  # the engine holds the file's weights
      except tasks.Skipped as e:
        console.log(f"no LiteRT-LM task scores: {e}")
        return str(e)
      except RuntimeError as e:  # the engine's own refusal, e.g. an op its CPU path lacks
        console.log(f"{recipe}: LiteRT-LM failed: {e}")
        failed[recipe] = str(e)
      path.unlink()
  return None


if __name__ == "__main__":
  common.run(main)

"""Benchmarks a zoo model against its peers on this machine, in one run, same threads.

  bazel run //tools:benchmark -- --model=tinyllama --variant=1.1b --quantize=dynamic_int8
  bazel run //tools:benchmark -- --checkpoint=DIR --peers=zoo,litertlm,export_hf   # by config
  bazel run //tools:benchmark -- --markdown_from=docs/bench/tinyllama-1.1b.json   # README table
  (--markdown_from takes a serving or speculative comparison's JSON too)
  bazel run //tools:benchmark -- --model=smollm2 --serving    # servers: tools/bench/serving.py
  bazel run //tools:benchmark -- --model=smollm2 --speculative  # tools/bench/speculative.py

Every peer reads the same seeded random weights of the real size (speed does not depend on
values), converted by its own tool, and is measured in a fresh process: conversion time and peak
RSS, file size, load time, first call, prefill tok/s per length, decode tok/s per context depth,
time to first token, runtime peak RSS; plus the machine's read bandwidth and the decode bound it
implies. A peer that cannot run is recorded as skipped, with the reason. Writes
docs/bench/<model>-<variant>.{json,md,png}. llama.cpp needs tools/setup_llamacpp.sh first,
ExecuTorch tools/setup_executorch.sh.
"""

import datetime
import json
import pathlib
import time

from absl import flags

from litezoo.artifacts import files as artifacts
from litezoo.core.errors import ZooError
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define(weights=False, checkpoint_config=True)
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads, the same for every peer.")
_PEERS = flags.DEFINE_list("peers", None, "Peers to run (default: all). See PEERS.")
_DEPTHS = flags.DEFINE_list("depths", ["16", "256", "512"], "Context depths to decode at.")
_DECODE_TOKENS = flags.DEFINE_integer("decode_tokens", 32, "Timed decode steps per depth.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats; medians are reported.")
_TTFT = flags.DEFINE_integer("ttft_prompt", 128, "Prompt length for time to first token.")
_SEED = flags.DEFINE_integer("weights_seed", 0, "Seed of the random weights.")
_BANDWIDTH_MIB = flags.DEFINE_integer("bandwidth_mib", 1024, "Array size of the bandwidth test.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "docs/bench", "Where the results go.")
_WORK_DIR = flags.DEFINE_string("work_dir", None,
                                "Converted files, reused by later runs (default: the cache).")
_RECONVERT = flags.DEFINE_bool("reconvert", False, "Convert again even if an earlier run did.")
_LLAMACPP_DIR = flags.DEFINE_string("llamacpp_dir", None,
                                    "llama.cpp build (default: where setup_llamacpp.sh puts it).")
_SERVING = flags.DEFINE_bool(
    "serving", False, "Instead: the serving comparison (tools/bench/serving.py) with the real "
    "weights: the zoo's server against llama-server and litert-lm serve; writes "
    "docs/bench/serving-<model>-<variant>.{json,md}.")
_SERVING_PEERS = flags.DEFINE_list("serving_peers", None, "Servers to compare (default: all): "
                                   "zoo, zoo_no_reuse, llamacpp, litertlm.")
_TURNS = flags.DEFINE_integer("turns", 5, "--serving: turns per chat.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", None, "--serving, --speculative: most tokens "
                                   "per reply (default: 64 serving, 192 speculative).")
_SPECULATIVE = flags.DEFINE_bool(
    "speculative", False, "Instead: the zoo's decode with and without prompt-lookup speculative "
    "decoding (tools/bench/speculative.py) on the model's real weights, greedy and sampled, on an "
    "extractive task and free generation; writes docs/bench/speculative-<model>-<variant>."
    "{json,md,png}.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.7, "--speculative: temperature of the "
                                  "sampled runs.")
_MARKDOWN_FROM = flags.DEFINE_string("markdown_from", None,
                                     "Print the markdown table of a results JSON and exit.")

PEERS = ("zoo", "zoo-interpreter", "reference", "llamacpp", "litertlm", "export_hf", "torch",
         "llamacpp-gguf", "executorch")


def _peer_runner(name: str):
  from litezoo.tools.bench import executorch, litertlm, llamacpp, reference, torch_eager, zoo  # pylint: disable=g-import-not-at-top
  return {
      "zoo": lambda t: zoo.run(t, "compiled"),
      "zoo-interpreter": lambda t: zoo.run(t, "interpreter"),
      "reference": reference.run,
      "llamacpp": llamacpp.run_export,
      "litertlm": litertlm.run_zoo_bundle,
      "export_hf": litertlm.run_export_hf,
      "torch": torch_eager.run,
      "llamacpp-gguf": llamacpp.run_source_gguf,
      "executorch": executorch.run,
  }[name]


def _int_list(values, flag):
  return zoo_flags.int_list(values, flag)


def main(argv):
  del argv
  from litezoo.tools.bench import report  # pylint: disable=g-import-not-at-top
  if _MARKDOWN_FROM.value:
    return _markdown_from(common.user_path(_MARKDOWN_FROM.value))
  if _SERVING.value and _SPECULATIVE.value:
    raise ZooError("--serving and --speculative are two different measurements: run one at a "
                   "time")
  _check_mode_flags()
  if _SERVING.value:
    return _serving()
  if _SPECULATIVE.value:
    return _speculative()
  peers = _check_peer_flags()
  out = zoo_flags.output_dir(_OUTPUT_DIR)  # before the hour of measuring, not after
  results, default_recipe = run(peers)
  outcomes = results["peers"]
  if not any(p["status"] == "ok" for p in outcomes.values()):  # an empty table helps nobody
    raise ZooError("no peer ran, so no results were written: " + "; ".join(
        f"{name} {p['status']}: {p['reason']}" for name, p in outcomes.items()))
  stem = results["model"] + "-" + results["variant"]
  if results["recipe"] != default_recipe:
    from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
    stem += "_" + recipes.parse(results["recipe"]).file_tag
  artifacts.write_json(out / f"{stem}.json", results)
  with artifacts.atomic_path(out / f"{stem}.md") as tmp:
    tmp.write_text(report.markdown(results))
  with artifacts.atomic_path(out / f"{stem}.png") as tmp:
    report.plot(results, tmp)
  console.out(report.markdown(results))
  console.out(f"wrote {out / stem}.json, .md and .png")
  failed = [name for name, p in outcomes.items() if p["status"] == "failed"]
  if failed:  # written for the peers that ran, and said: a failed peer is not a result
    console.log(f"benchmark: error: {', '.join(failed)} failed (the reason is above and in the "
                "JSON); the other peers' results are written")
    return 1
  return 0


# The flags each measurement reads; any other given is refused, not ignored.
_PEER_FLAGS = ("peers", "depths", "decode_tokens", "ttft_prompt", "bandwidth_mib", "work_dir",
               "reconvert", "weights_seed")
_MODE_FLAGS = {"serving": ("serving_peers", "turns", "max_tokens", "llamacpp_dir"),
               "speculative": ("temperature", "max_tokens", "repeats")}


def _check_mode_flags() -> None:
  mode = "serving" if _SERVING.value else "speculative" if _SPECULATIVE.value else None
  for name in sorted({f for flags_ in _MODE_FLAGS.values() for f in flags_} | set(_PEER_FLAGS)):
    if not zoo_flags.given(name):
      continue
    takes = [m for m, names in _MODE_FLAGS.items() if name in names]
    if name in _PEER_FLAGS or name in ("repeats", "llamacpp_dir"):
      takes.append("peers")
    if (mode or "peers") not in takes:
      where = " or ".join("the peer benchmark" if m == "peers" else f"--{m}" for m in takes)
      raise ZooError(f"--{name} applies only to {where}"
                     + (f", not to --{mode}" if mode else "") + ": drop it")


def _check_peer_flags() -> list[str]:
  """The peers to run, once every peer-benchmark flag is checked (before any measuring)."""
  if _PEERS.value is not None and not [p for p in _PEERS.value if p.strip()]:
    raise zoo_flags.FlagError(f"--peers is empty: name peers ({', '.join(PEERS)}), or leave the "
                              "flag out for all")
  peers = [p.strip() for p in _PEERS.value or PEERS if p.strip()]
  unknown = [p for p in peers if p not in PEERS]
  if unknown:
    raise zoo_flags.FlagError(f"unknown --peers {', '.join(unknown)}; peers: {', '.join(PEERS)}")
  if len(set(peers)) < len(peers):
    raise zoo_flags.FlagError(f"--peers={','.join(peers)} names a peer twice: name each once")
  zoo_flags.check_threads(_THREADS.value)
  for name, value in (("repeats", _REPEATS.value),
                      ("decode_tokens", _DECODE_TOKENS.value), ("ttft_prompt", _TTFT.value),
                      ("bandwidth_mib", _BANDWIDTH_MIB.value)):
    if value < 1:
      raise zoo_flags.FlagError(f"--{name} must be at least 1, got {value}")
  # A depth is the context decode runs after: at least the one token a prefill needs.
  empty = [d for d in _int_list(_DEPTHS.value, "depths") if d < 1]
  if empty:
    raise zoo_flags.FlagError(f"--depths must be at least 1, got {empty[0]}")
  # (A --llamacpp_dir without a build in it is the llama.cpp peers' own "skipped" row.)
  if _LLAMACPP_DIR.value and not {"llamacpp", "llamacpp-gguf"} & set(peers):
    raise zoo_flags.FlagError("--llamacpp_dir applies only with the llamacpp or llamacpp-gguf "
                              "peer, which --peers leaves out: drop it")
  if _LLAMACPP_DIR.value and not common.user_path(_LLAMACPP_DIR.value).is_dir():  # a typo
    raise zoo_flags.FlagError(f"--llamacpp_dir={_LLAMACPP_DIR.value} is not a directory: give "
                              "the directory tools/setup_llamacpp.sh built into, or leave the "
                              "flag out for its default")
  if _WORK_DIR.value is not None:  # an empty one is refused, not read as unset
    zoo_flags.output_dir(_WORK_DIR)
  return peers


def _check_fit(kv: int) -> None:
  """Refuses a --depths or --ttft_prompt the user gave that the KV cache of `kv` cannot hold (the
  defaults that do not fit a small cache are dropped, as they were not asked for)."""
  if zoo_flags.given("depths"):
    unfit = [d for d in _int_list(_DEPTHS.value, "depths") if d + _DECODE_TOKENS.value + 2 > kv]
    if unfit:
      raise zoo_flags.FlagError(
          f"--depths={unfit[0]} does not fit a KV cache of {kv} with {_DECODE_TOKENS.value} "
          f"decode tokens: use at most {kv - _DECODE_TOKENS.value - 2}, or a larger "
          "--kv_cache_max_len")
  if zoo_flags.given("ttft_prompt") and _TTFT.value > kv // 2:
    raise zoo_flags.FlagError(f"--ttft_prompt={_TTFT.value} is more than half the KV cache of {kv}"
                              f": use at most {kv // 2}, or a larger --kv_cache_max_len")


def run(peers: list[str]) -> tuple[dict, str]:
  """(the results, the model's default recipe)."""
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench import measure, report, weights  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench.target import Skipped, Target  # pylint: disable=g-import-not-at-top
  selection = _SELECT.selection()
  spec, variant, recipe, signatures = (selection.spec, selection.variant, selection.recipe,
                                       selection.signatures)
  config = dict(spec.variant(variant).config)
  kv = signatures.kv_cache_max_len
  _check_fit(kv)
  plan = measure.Plan(
      threads=_THREADS.value, prefill_lengths=tuple(sorted(signatures.prefill_seq_lens)),
      depths=tuple(d for d in _int_list(_DEPTHS.value, "depths")
                   if d + _DECODE_TOKENS.value + 2 <= kv),
      decode_tokens=_DECODE_TOKENS.value, repeats=_REPEATS.value,
      ttft_prompt=min(_TTFT.value, kv // 2))
  if not plan.depths:
    raise ZooError(f"no --depths fit a KV cache of {kv} with {plan.decode_tokens} decode tokens")
  log = measure.log
  started = time.time()
  load_start = measure.load_average()
  log(f"benchmark {spec.name}-{variant} {recipe}, {plan.threads} threads, peers: "
      f"{', '.join(peers)}; load average {load_start}")
  log("measuring memory read bandwidth")
  bandwidth_start = _bandwidth(plan.threads)
  log(f"read bandwidth {bandwidth_start['bytes_per_s'] / 1e9:.1f} GB/s")
  # A model read from a checkpoint's config travels to the peers' processes as that path.
  config_source = (str(common.user_path(_SELECT.checkpoint.value))
                   if _SELECT.checkpoint.value else None)
  checkpoint, read_fraction = _checkpoint(spec.name, variant, config_source)
  work = (common.user_path(_WORK_DIR.value) if _WORK_DIR.value else
          weights.bench_dir() / "runs" / f"{checkpoint.name}-{recipes.parse(recipe).file_tag}-"
          f"p{'_'.join(map(str, plan.prefill_lengths))}-kv{kv}")
  work.mkdir(parents=True, exist_ok=True)
  target = Target(spec=spec, variant=variant, recipe=recipe, config=config, checkpoint=checkpoint,
                  prefill_lengths=plan.prefill_lengths, kv_cache_max_len=kv,
                  kv_layout=signatures.kv_layout, zoo_signatures=signatures.as_dict(),
                  work=work, plan=plan,
                  seed=_SEED.value, decode_read_fraction=read_fraction,
                  reconvert=_RECONVERT.value, config_source=config_source,
                  llamacpp_dir=common.user_path(_LLAMACPP_DIR.value) if _LLAMACPP_DIR.value else None)
  results_peers = {}
  for i, name in enumerate(peers, 1):
    log(f"[{i}/{len(peers)}] {name} (load average {measure.load_average()})")
    t0 = time.monotonic()
    try:
      peer = {"status": "ok", **_peer_runner(name)(target)}
    except Skipped as e:
      peer = {"status": "skipped", "reason": str(e)}
    except Exception as e:  # pylint: disable=broad-except
      peer = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    peer["seconds"] = round(time.monotonic() - t0, 1)
    log(f"[{i}/{len(peers)}] {name}: {peer['status']}"
        f"{': ' + peer['reason'] if 'reason' in peer else ''} ({peer['seconds']:.0f} s)")
    results_peers[name] = peer
  # Measured again at the end; the higher figure is the machine's (load only lowers it).
  bandwidth_end = _bandwidth(plan.threads)
  bandwidth = {**max(bandwidth_start, bandwidth_end, key=lambda b: b["bytes_per_s"]),
               "start_bytes_per_s": bandwidth_start["bytes_per_s"],
               "end_bytes_per_s": bandwidth_end["bytes_per_s"]}
  for peer in results_peers.values():
    report.derive(peer, read_fraction, bandwidth["bytes_per_s"])
  prefill_key = "128" if 128 in plan.prefill_lengths else str(plan.prefill_lengths[-1])
  results = {
      "schema": report.SCHEMA,
      "model": spec.name, "variant": variant, "recipe": recipe,
      "weights": {"kind": "random", "seed": _SEED.value, "checkpoint": str(checkpoint)},
      "signatures": {"prefill_lengths": list(plan.prefill_lengths), "kv_cache_max_len": kv,
                     "kv_layout": signatures.kv_layout, "zoo": signatures.as_dict()},
      "plan": plan.to_json(),
      "machine": {**measure.machine(), "load_average_start": load_start,
                  "load_average_end": measure.load_average()},
      "versions": measure.versions(),
      "bandwidth": bandwidth,
      "decode_read_fraction": read_fraction,
      "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
      "seconds": round(time.time() - started, 1),
      "prefill_key": prefill_key,
      "peers": results_peers,
      "peer_order": list(results_peers),
  }
  results["targets"] = report.targets(results_peers, prefill_key)
  results["summary"] = report.summary(results)
  return results, spec.default_recipe


def _markdown_from(path: pathlib.Path) -> int:
  """Prints the markdown of a benchmark's or a serving comparison's results JSON."""
  from litezoo.tools.bench import report, serving, speculative  # pylint: disable=g-import-not-at-top
  try:
    results = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ZooError(f"--markdown_from: cannot read {path} as JSON ({e})") from e
  schema = results.get("schema") if isinstance(results, dict) else None
  known = (report.SCHEMA, serving.SCHEMA, speculative.SCHEMA)
  if schema not in known:
    raise ZooError(f"{path} is not a benchmark result ({', '.join(known)}); pass a .json that "
                   "tools/benchmark wrote")
  try:
    if schema == report.SCHEMA:
      text = report.markdown(results)
    else:
      module = serving if schema == serving.SCHEMA else speculative
      text = module.markdown(results) + "\n" + module.conditions(results) + "\n"
  except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
    raise ZooError(f"{path} says {schema} but a field is missing or malformed ({e!r}); "
                   "pass a .json that tools/benchmark wrote") from e
  console.out(text, end="")
  return 0


def _serving() -> int:
  """The serving comparison on the selected model's real weights (tools/bench/serving.py)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench import measure, serving  # pylint: disable=g-import-not-at-top
  peers = _SERVING_PEERS.value or list(serving.PEERS)
  unknown = [p for p in peers if p not in serving.PEERS]
  if unknown:
    raise ZooError(f"unknown --serving_peers {', '.join(unknown)}; peers: "
                   f"{', '.join(serving.PEERS)}")
  max_tokens = 64 if _MAX_TOKENS.value is None else _MAX_TOKENS.value
  if _TURNS.value < 2 or max_tokens < 2:
    raise ZooError("--turns and --max_tokens must be at least 2")
  s = _SELECT.selection()
  if s.weights.is_random:
    raise ZooError(f"{s.name} has no real weights; --serving compares real answers")
  name = f"{s.spec.name}-{s.variant}"
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  # The recipe's file tag, not its name: litert-lm reads commas and `=` in a model path as options.
  work = artifacts.cache_root() / "bench" / "serving" / f"{name}-{recipes.parse(s.recipe).file_tag}"
  work.mkdir(parents=True, exist_ok=True)

  def bundle() -> pathlib.Path:
    found = sorted(work.glob("*.litertlm"))
    if not found:
      log(f"bundling {name} ({s.recipe}) as .litertlm")
      run = subprocess.run([sys.executable, "-m", "litezoo.tools.bundle", f"--model={s.spec.name}",
                            f"--variant={s.variant}", f"--quantize={s.recipe}",
                            "--format=litertlm", f"--output_dir={work}"],
                           capture_output=True, text=True, check=False)
      found = sorted(work.glob("*.litertlm"))
      if run.returncode != 0 or not found:
        raise serving.Skipped(f"the .litertlm bundle failed: {run.stderr.strip()[-300:]}")
    return found[0]

  log = measure.log
  started = time.time()
  ctx = {"model": s.spec.name, "variant": s.variant, "model_id": name, "recipe": s.recipe,
         "threads": _THREADS.value, "kv_cache_max_len": s.signatures.kv_cache_max_len,
         "gguf": s.weights.path if s.weights.path.suffix == ".gguf" else None,
         "litertlm": bundle, "turns": _TURNS.value, "max_tokens": max_tokens,
         "work": work,
         "llamacpp_dir": common.user_path(_LLAMACPP_DIR.value) if _LLAMACPP_DIR.value else None}
  log(f"serving comparison {name} {s.recipe}, {_THREADS.value} threads, peers {', '.join(peers)}; "
      f"load average {measure.load_average()}")
  results = {"schema": serving.SCHEMA, "model": s.spec.name, "variant": s.variant,
             "recipe": s.recipe, "threads": _THREADS.value,
             "kv_cache_max_len": s.signatures.kv_cache_max_len,
             "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
             "load_average_start": measure.load_average(),
             "results": serving.run(ctx, peers, log)}
  results["machine"] = measure.machine_at_end()
  results["seconds"] = round(time.time() - started, 1)
  return _write(f"serving-{name}", s, results, serving,
                f"Serving {name} ({s.recipe}, {_THREADS.value} threads)")


def _write(stem: str, s, results: dict, module, title: str) -> int:
  """`stem`.json, .md (title, plot, table, conditions) and .png in --output_dir, from the
  serving or speculative comparison `module`; one set of files per recipe."""
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  out = zoo_flags.output_dir(_OUTPUT_DIR)
  if s.recipe != s.spec.default_recipe:  # one file per recipe: another recipe does not overwrite it
    stem += "_" + recipes.parse(s.recipe).file_tag
  artifacts.write_json(out / f"{stem}.json", results)
  table = module.markdown(results)
  with artifacts.atomic_path(out / f"{stem}.md") as tmp:
    tmp.write_text(f"# {title}\n\n![plot]({stem}.png)\n\n{table}\n{module.conditions(results)}\n")
  with artifacts.atomic_path(out / f"{stem}.png") as tmp:
    module.plot(results, tmp)
  console.out(table)
  console.out(f"wrote {out / stem}.json, .md and .png")
  return 0


def _speculative() -> int:
  """Prompt-lookup speculative decoding against the zoo's plain decode, on the selected model's
  real weights (tools/bench/speculative.py)."""
  from litezoo import pipeline  # pylint: disable=g-import-not-at-top
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  from litezoo.runtime import generate, runner  # pylint: disable=g-import-not-at-top
  from litezoo.tools.bench import measure, speculative  # pylint: disable=g-import-not-at-top
  max_tokens = 192 if _MAX_TOKENS.value is None else _MAX_TOKENS.value
  zoo_flags.check_threads(_THREADS.value)
  for name, value, low in (("max_tokens", max_tokens, 2), ("repeats", _REPEATS.value, 1)):
    if value < low:
      raise ZooError(f"--{name} must be at least {low}, got {value}")
  if _TEMPERATURE.value <= 0:
    raise ZooError(f"--temperature must be above 0 (the sampled runs), got {_TEMPERATURE.value}")
  s = _SELECT.selection()
  if s.weights.is_random:
    raise ZooError(f"{s.name} has no real weights; --speculative measures real answers (drafts "
                   "match only where a model writes sense)")
  if not s.signatures.verify_lengths:
    raise ZooError(f"--speculative needs verify_<k> signatures, and {s.name} would have none: "
                   "add --verify_lengths=8")
  log = measure.log
  tok = pipeline.tokenizer(s.weights, log)
  if tok.chat_template is None:
    raise ZooError(f"{s.name} has no chat template; --speculative prompts through one")
  artifact = pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                               signatures=s.signatures, log=log)
  session = generate.Session(runner.Runner(artifact.path, num_threads=_THREADS.value),
                             tok.stop_ids)
  started = time.time()
  log(f"speculative decoding {s.name} {s.recipe}, {_THREADS.value} threads; load average "
      f"{measure.load_average()}")
  results = {"schema": speculative.SCHEMA, "model": s.spec.name, "variant": s.variant,
             "recipe": s.recipe, "threads": _THREADS.value, "max_new_tokens": max_tokens,
             "repeats": _REPEATS.value, "temperature": _TEMPERATURE.value,
             "verify_length": max(s.signatures.verify_lengths),
             "verify_windows": sorted(s.signatures.verify_windows),
             "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(),
             "load_average_start": measure.load_average()}
  results["results"] = speculative.run(session, tok, pathlib.Path(recipes.__file__).parent / "data",
                                       max_tokens, _REPEATS.value, _TEMPERATURE.value, log)
  results["target"] = speculative.target(results)
  results["machine"] = measure.machine_at_end()
  results["seconds"] = round(time.time() - started, 1)
  return _write(f"speculative-{s.spec.name}-{s.variant}", s, results, speculative,
                f"Speculative decoding, {s.name} ({s.recipe})")


def _bandwidth(threads: int) -> dict:
  """In its own process: a child's peak RSS counts its parent's at the fork, so this process
  (which forks every peer) must never hold the test's array."""
  from litezoo.tools.bench import measure  # pylint: disable=g-import-not-at-top
  result, error = measure.run_child("bandwidth", {"threads": threads, "mib": _BANDWIDTH_MIB.value})
  if result is None:
    raise ZooError(f"the bandwidth test failed: {error}")
  return result


def _checkpoint(model: str, variant: str,
                config_source: str | None) -> tuple[pathlib.Path, float]:
  """The shared random checkpoint, written once in its own process (4.4 GB for 1.1B), and the
  share of the weights a decode step reads."""
  from litezoo.tools.bench import measure  # pylint: disable=g-import-not-at-top
  result, error = measure.run_child("checkpoint", {"model": model, "variant": variant,
                                                   "seed": _SEED.value,
                                                   "config_source": config_source})
  if result is None:
    raise ZooError(f"could not write the random checkpoint: {error}")
  return pathlib.Path(result["checkpoint"]), result["decode_read_fraction"]


if __name__ == "__main__":
  common.run(main)

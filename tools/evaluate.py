"""Measures what each quantization recipe costs in quality, for any registered model.

  bazel run //tools:evaluate -- --model=smollm2 --quantize=dynamic_int8
  bazel run //tools:evaluate -- --model=smollm2          # every named recipe and an override mix

Perplexity on a public-domain English text shipped in the repo (quant/data), through each converted
.tflite with its KV cache, against the float PyTorch model; top-1 agreement and mean KL divergence of
next-token distributions; file size and bits per weight. Writes JSON, a markdown table and a plot.
"""

import json
import pathlib
import sys

from absl import flags

from litezoo.core import artifacts, cache, checkpoint as checkpoint_lib, convert as convert_lib
from litezoo.core import evaluate, export, loader, runner, tokenizer
from litezoo.core.registry import default_registry
from litezoo.core.spec import Signatures
from litezoo.quant import recipes
from litezoo.tools import common

TEXT = pathlib.Path(__file__).resolve().parent.parent / "quant" / "data" / "alice_in_wonderland.txt"
DEFAULT_RECIPES = [*recipes.RECIPES, "dynamic_int4_block32,embedding=int8",
                   "dynamic_int4_block128,embedding=int8"]

_MODEL = flags.DEFINE_string("model", None, "Registered model name.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint (default: the variant's source).")
_QUANTIZE = flags.DEFINE_multi_string("quantize", None, "Recipe(s) to evaluate; repeat the flag "
                                      "for several (default: every named recipe and two mixes).")
_WINDOW = flags.DEFINE_integer("window", 256, "Tokens per scored window.")
_MAX_TOKENS = flags.DEFINE_integer("max_tokens", 8192, "Score this many tokens of the text "
                                   "(0: all of it).")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads for the LiteRT interpreter.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "eval", "Where the JSON, table and plot go.")


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def table(model: str, rows: list[dict]) -> str:
  lines = [f"| {model} recipe | size (MiB) | bits/weight | perplexity | vs float | top-1 agree | "
           "mean KL |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| `{r['recipe']}` | {r['size_bytes'] / 2**20:.1f} | {r['bits_per_weight']:.2f} | "
                 f"{r['perplexity']:.3f} | {r['perplexity_change']:+.2%} | "
                 f"{r['top1_agreement']:.2%} | {r['mean_kl']:.4f} |")
  return "\n".join(lines)


def plot(model: str, baseline: float, rows: list[dict], path: pathlib.Path) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for r in rows:
    ax.scatter(r["size_bytes"] / 2**20, r["perplexity"], s=30)
    ax.annotate(r["recipe"].replace(",", "\n"), (r["size_bytes"] / 2**20, r["perplexity"]),
                fontsize=7, xytext=(4, 4), textcoords="offset points")
  ax.axhline(baseline, color="gray", linestyle="--", linewidth=1, label="PyTorch float32")
  ax.set_xlabel("file size (MiB)")
  ax.set_ylabel("perplexity (lower is better)")
  ax.set_title(f"{model}: quality against size per recipe")
  ax.legend()
  fig.tight_layout()
  with artifacts.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  variant = _VARIANT.value or spec.default_variant
  chosen = [recipes.check(r) for r in (_QUANTIZE.value or DEFAULT_RECIPES)]
  if _WINDOW.value < 2 or _MAX_TOKENS.value < 0:
    raise common.ZooError("--window must be at least 2 and --max_tokens >= 0")
  signatures = Signatures(tuple(n for n in spec.signatures.prefill_seq_lens if n <= _WINDOW.value)
                          or (_WINDOW.value,), max(_WINDOW.value, 128))
  checkpoint = common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None
  weights = convert_lib.checkpoint_path(spec, variant, checkpoint)
  tok = tokenizer.ByteTokenizer() if weights is None else tokenizer.load(weights)
  tokens = tok.encode(TEXT.read_text())
  prefix = []
  if tok.bos_id is not None and tokens[:1] == [tok.bos_id]:
    prefix, tokens = tokens[:1], tokens[1:]  # BOS starts every window, not just the first
  if _MAX_TOKENS.value:
    tokens = tokens[:_MAX_TOKENS.value]
  config = spec.variant(variant).config
  model = spec.build(config, signatures.kv_cache_max_len)
  if weights is not None:
    loader.load(model, spec.tensor_names, checkpoint_lib.open_checkpoint(weights), log=_log)
  else:
    import torch  # pylint: disable=g-import-not-at-top
    torch.manual_seed(0)
    model = spec.build(config, signatures.kv_cache_max_len)
  paths, runners, skipped = {}, {}, {}
  for recipe in chosen:
    try:
      paths[recipe] = cache.artifact(spec, variant, recipe=recipe, signatures=signatures,
                                     checkpoint=checkpoint, log=_log)
    except export.QuantizeError as e:  # e.g. block size not dividing this model's dimensions
      _log(f"skipping {recipe}: {e}")
      skipped[recipe] = str(e)
      continue
    runners[recipe] = runner.Runner(paths[recipe], num_threads=_THREADS.value)
  _log(f"scoring {len(tokens)} tokens of {TEXT.name} in windows of {_WINDOW.value}")
  baseline, scores = evaluate.evaluate(model, runners, tokens, _WINDOW.value, progress=_log,
                                       prefix=prefix)
  params = sum(p.numel() for p in model.parameters())
  rows = []
  for recipe, score in scores.items():
    manifest = artifacts.read_manifest(paths[recipe])
    rows.append({
        "recipe": recipe, "size_bytes": manifest["size_bytes"],
        "bits_per_weight": manifest["size_bytes"] * 8 / params,
        "weight_types": manifest.get("weights", {}).get("params_by_type", {}),
        "perplexity": score.perplexity,
        "perplexity_change": score.perplexity / baseline.perplexity - 1,
        "top1_agreement": score.top1_agreement, "mean_kl": score.mean_kl,
        "tokens": score.tokens,
    })
  name = f"{spec.name}-{variant}"
  result = {"model": spec.name, "variant": variant, "text": TEXT.name, "window": _WINDOW.value,
            "tokens_scored": baseline.tokens, "parameters": params,
            "float_perplexity": baseline.perplexity, "recipes": rows, "skipped": skipped,
            "versions": convert_lib.versions()}
  out = artifacts.ensure_writable_dir(common.user_path(_OUTPUT_DIR.value))
  artifacts.write_json(out / f"{name}.json", result)
  markdown = (f"{table(name, rows)}\n\nPyTorch float32 perplexity {baseline.perplexity:.3f} over "
              f"{baseline.tokens} scored tokens ({TEXT.name}, windows of {_WINDOW.value}).\n")
  for recipe, reason in skipped.items():
    markdown += f"\n`{recipe}` does not apply: {reason}\n"
  with artifacts.atomic_path(out / f"{name}.md") as tmp:
    tmp.write_text(markdown)
  plot(name, baseline.perplexity, rows, out / f"{name}.png")
  print(markdown)
  print(f"wrote {out / name}.json, .md and .png")
  return 0


if __name__ == "__main__":
  common.run(main)

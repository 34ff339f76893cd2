"""The reference path: litert-torch's own TinyLlama example, converted with its own helper
(`converter.convert_to_tflite`) and run through ai_edge_litert's standard signature runner, which
copies every KV-cache tensor in and out of each call.

Two deviations, both for memory: the helper converts float32 with lightweight conversion (the
one-shot int8 conversion peaks above 21 GB for 1.1B), then the helper's own recipe for the same
quantize flag is applied to that file with litert-torch's translate_recipe.quantize_model, the
code its converter runs internally.
"""

import gc
import json
import pathlib
import sys

from litezoo.tools.bench import measure
from litezoo.tools.bench.target import Skipped, Target, artifact_info, converted

# Models with an example in litert_torch.generative.examples: (module, TENSOR_NAMES, class).
EXAMPLES = {"tinyllama": "tiny_llama"}
HELPER_RECIPES = ("none", "dynamic_int8", "weight_only_int8", "fp16", "dynamic_int4_block32",
                  "dynamic_int4_block128")


def run(target: Target) -> dict:
  example = EXAMPLES.get(target.spec.name)
  if example is None:
    raise Skipped(f"litert-torch ships no example for {target.spec.name} in this benchmark's map "
                  f"(examples mapped: {', '.join(EXAMPLES)})")
  from litezoo.quant import recipes  # pylint: disable=g-import-not-at-top
  quantize = recipes.parse(target.recipe).default
  if quantize not in HELPER_RECIPES:
    raise Skipped(f"the example's helper has no recipe {quantize}")
  out = target.work / "reference"
  out.mkdir(parents=True, exist_ok=True)
  path = out / f"{example}_{quantize}_ekv{target.kv_cache_max_len}.tflite"
  args = {"example": example, "checkpoint": str(target.checkpoint), "config": target.config,
          "output": str(path), "quantize": quantize, "prefill_lengths": target.prefill_lengths,
          "kv_cache_max_len": target.kv_cache_max_len}
  cmd = [sys.executable, "-m", "litezoo.tools.bench.child", "convert-reference",
         json.dumps(args)]
  record = converted(target, path, lambda: measure.run_measured(cmd, env=measure.child_env()),
                     f"litert-torch example {example} ({quantize})")
  measured, error = measure.run_child("reference", {
      "model": str(path), "plan": target.plan.to_json(), "vocab": target.vocab()})
  if measured is None:
    raise RuntimeError(error)
  return {"engine": "ai_edge_litert Interpreter signature runner",
          "artifact": artifact_info(path, "tflite"), "conversion": record, **measured}


def _example_config(module, hf: dict):
  """The example's config; other sizes than the example's (tests' tiny variant) resized."""
  config = module.get_model_config()
  attn = config.block_config(0).attn_config
  attn.num_heads = hf["num_attention_heads"]
  attn.num_query_groups = hf.get("num_key_value_heads") or hf["num_attention_heads"]
  attn.head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
  config.block_config(0).ff_config.intermediate_size = hf["intermediate_size"]
  config.vocab_size, config.num_layers = hf["vocab_size"], hf["num_hidden_layers"]
  config.embedding_dim = hf["hidden_size"]
  return config


def convert_child(args: dict) -> dict:
  import importlib  # pylint: disable=g-import-not-at-top
  import functools  # pylint: disable=g-import-not-at-top
  from litert_torch._convert import interface as converter_utils  # pylint: disable=g-import-not-at-top
  from litert_torch.generative.utilities import converter, export_config, model_builder  # pylint: disable=g-import-not-at-top
  from litert_torch.quantize import translate_recipe  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"litert_torch.generative.examples.{args['example']}."
                                   f"{args['example']}")
  kv = args["kv_cache_max_len"]
  config = _example_config(module, args["config"])
  if config == module.get_model_config():
    model = module.build_model(args["checkpoint"], mask_cache_size=kv)
  else:
    model = model_builder.build_decoder_only_model(
        args["checkpoint"], config, module.TENSOR_NAMES, model_class=module.TinyLlama,
        mask_cache_size=kv)
  measure.log("  reference: converting float32 with the example's helper")
  converter_utils.Converter.convert = functools.partialmethod(
      converter_utils.Converter.convert, lightweight_conversion=True)
  output = pathlib.Path(args["output"])
  float_file = converter.convert_to_tflite(
      model, output_path=str(output.parent), output_name_prefix=".float", quantize="none",
      prefill_seq_len=list(args["prefill_lengths"]), kv_cache_max_len=kv,
      export_config=export_config.ExportConfig(output_logits_on_prefill=True))
  del model
  gc.collect()
  if args["quantize"] == "none":
    pathlib.Path(float_file).rename(output)
  else:
    measure.log(f"  reference: quantizing with the helper's {args['quantize']} recipe")
    recipe = translate_recipe.translate_to_ai_edge_recipe(
        converter.get_quant_recipe_from_flag(args["quantize"], config).generative_recipe)
    data = translate_recipe.quantize_model(pathlib.Path(float_file).read_bytes(), recipe)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(bytes(data))
    tmp.rename(output)
    pathlib.Path(float_file).unlink()
  return {"written": str(output)}


def measure_child(args: dict) -> dict:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  plan = measure.Plan.from_json(args["plan"])

  class Session:
    """The standard way to drive the example's file: signature runners, caches through numpy."""

    def __init__(self):
      self.interpreter = litert.Interpreter(model_path=args["model"], num_threads=plan.threads)
      names = self.interpreter.get_signature_list()
      self.runners = {n: self.interpreter.get_signature_runner(n) for n in names}
      self.prefills = sorted(int(n.split("_")[1]) for n in names if n.startswith("prefill_"))
      details = self.runners["decode"].get_input_details()
      self.spec = {n: (d["shape"], d["dtype"]) for n, d in details.items()
                   if n.startswith("kv_cache_")}
      self.kv_cache_max_len = int(next(iter(self.spec.values()))[0][1])
      self.reset()

    def reset(self):
      self.cache = {n: np.zeros(s, t) for n, (s, t) in self.spec.items()}
      self.pos = 0

    def _call(self, name, tokens, rows):
      out = self.runners[name](tokens=np.array([tokens], np.int32),
                               input_pos=np.arange(self.pos, self.pos + len(tokens),
                                                   dtype=np.int32), **self.cache)
      self.cache = {n: out[n] for n in self.cache}
      self.pos += rows
      return out["logits"][0, rows - 1]

    def prefill(self, tokens):
      logits = None
      while tokens:  # the smallest signature that fits, chunked when none does
        size = next((p for p in self.prefills if p >= len(tokens)), self.prefills[-1])
        chunk, tokens = tokens[:size], tokens[size:]
        logits = self._call(f"prefill_{size}", chunk + [0] * (size - len(chunk)), len(chunk))
      return logits

    def decode(self, token):
      return self._call("decode", [token], 1)

  return measure.measure_session(Session, plan, args["vocab"], "reference")

"""Quantization recipes on the tiny models: the recipe string's options, what the quantizer is
given (checked against litert-torch's own translation), and what the files really hold, read back
from the flatbuffer: int4/int8 where the recipe says so, the tied embedding one buffer read by the
lookup and every signature's LM head, int4 on 16 levels checked against llama.cpp's Q4_0 (gguf-py's
implementation of ggml's reference quantizer)."""

import json
import re

import numpy as np
import pytest

from litezoo import pipeline
from litezoo.artifacts import flatbuffer, manifest as manifest_lib
from litezoo.conversion import compact, convert, export, gptq, int4_levels
from litezoo.core import registry
from litezoo.core.spec import Signatures
from litezoo.quant import recipes
from litezoo.reference.reauthored import TorchDecoder
from litezoo.runtime import runner
from litezoo.tests import testing

REGISTRY = registry.Registry()
# One fresh artifact cache for the module (autouse).
module_artifact_cache = testing.module_artifact_cache
# Few signatures for the model converted only here; the tiny TinyLlama takes the suites' shared
# ones (//tests:tinyllama_tiny_float holds them converted).
SIGNATURES = Signatures(prefill_seq_lens=(8, 16), kv_cache_max_len=40)


@pytest.mark.parametrize("text, name", [
    ("dynamic_int8:minmax", "dynamic_int8"),
    ("int8:hadamard", "dynamic_int8:hadamard"),
    ("dynamic_int4_block64:levels16 , embedding=int8:octav",
     "dynamic_int4_block64:levels16,embedding=dynamic_int8:octav"),
    ("weight_only_int8:octav,feedforward=dynamic_int4_block256",
     "weight_only_int8:octav,feedforward=dynamic_int4_block256"),
    ("int4:hadamard:gptq,embedding=int8", "dynamic_int4_block32:gptq:hadamard,embedding=dynamic_int8"),
    ("int8:hadamard:gptq", "dynamic_int8:gptq:hadamard"),
    ("dynamic_int4_channel:hadamard:gptq", "dynamic_int4_channel:gptq:hadamard"),
    # An override giving a part what it gets anyway is the same file, so the same name.
    ("dynamic_int8,attention=int8", "dynamic_int8"),
    ("int4,feedforward=int8,down_proj=int8", "dynamic_int4_block32,feedforward=dynamic_int8"),
    ("int4,down_proj=dynamic_int4_block32,embedding=int8",
     "dynamic_int4_block32,embedding=dynamic_int8"),
])
def test_options_have_one_canonical_name(text, name):
  assert recipes.check(text) == name
  assert recipes.parse(name).name == name
  assert "16 levels" in recipes.describe("int4:levels16")["description"]


def test_the_manifest_describes_gptq_hadamard_as_one_algorithm():
  text = recipes.describe("dynamic_int4_channel:hadamard:gptq,embedding=int8")["description"]
  assert text.startswith("int4 per-channel weights")
  assert "GPTQ of the weights rotated" in text and "size up to 32" in text
  assert "OCTAV" not in text  # hadamard alone is followed by OCTAV; with gptq it is not
  assert "OCTAV" in recipes.describe("int8:hadamard")["description"]
  text = recipes.describe("int8:gptq:hadamard")["description"]
  assert text.startswith("int8 per-channel weights") and text.endswith("int8 per channel")
  assert "size up to 32" in text and "OCTAV" not in text
  # Each says the grid and block size it uses, not every recipe's.
  assert recipes.describe("int8:hadamard")["description"].endswith(
      "Hadamard rotation of the input dimension by blocks of 32 (DECOMPOSED_HADAMARD_ROTATION), "
      "then OCTAV")
  assert recipes.describe("int8:gptq")["description"].endswith(
      "GPTQ (Frantar et al. 2023) on calibration text (int8 per channel), see conversion/gptq.py")
  assert "(int4 on 16 levels)" in recipes.describe("int4:gptq")["description"]
  # Blockwise int4 rotates within its own blocks, with or without gptq (not whole rows).
  assert recipes.describe("dynamic_int4_block64:hadamard")["description"].endswith(
      "by blocks of 64 (DECOMPOSED_HADAMARD_ROTATION), then OCTAV")


@pytest.mark.parametrize("text, message", [
    ("dynamic_int8:sparse", "unknown option 'sparse' in 'dynamic_int8:sparse'; valid options: "
     "minmax, octav, hadamard, levels16, gptq"),
    ("dynamic_int4_block32:gptq:levels16", "drop it (gptq already uses all 16 levels)"),
    ("dynamic_int4_block48", "unknown quantization recipe 'dynamic_int4_block48'"),
    ("dynamic_int8:levels16", "min-max int4 recipes only ('dynamic_int8:levels16'): drop it "
     "(int8 has its own 255 levels)"),
    ("dynamic_int8:gptq:levels16", "drop it (int8 has its own 255 levels)"),
    ("dynamic_int4_block32:octav:levels16", "drop it (octav sets its own scales)"),
    ("dynamic_int8:octav:hadamard", "choose one algorithm"),
    ("dynamic_int4_block32:gptq:octav", "(gptq:hadamard is the one pair)"),
    ("weight_only_int8:hadamard", "hadamard applies to the dynamic recipes only"),
    ("fp16:octav", "fp16 takes no options"),
    ("int8:octav:octav", "option octav is repeated in 'int8:octav:octav'; give it once"),
    # A float part inside a quantized feedforward: an entry can add quantization, not remove it.
    ("dynamic_int4_block32,down_proj=none", "down_proj=none inside a quantized feedforward"),
    ("none,feedforward=int4,down_proj=none", "keep the down projections at 8 bits instead"),
    ("int8,down_proj=none,down_proj=int8", "down_proj is overridden twice in 'int8,down_proj=none,"
     "down_proj=int8': give each component once"),
])
def test_bad_options_are_refused_in_one_line(text, message):
  with pytest.raises(recipes.UnknownRecipeError) as e:
    recipes.parse(text)
  assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["fp16", "dynamic_int8", "weight_only_int8",
                                  "dynamic_int4_block32", "dynamic_int4_block128"])
def test_plain_recipes_give_the_quantizer_what_litert_torch_gives_it(name):
  """The reference is litert-torch's GenerativeQuantRecipe translation of the same layer recipe."""
  from ai_edge_quantizer import recipe_manager  # pylint: disable=g-import-not-at-top
  from litert_torch.generative.quantize import quant_recipe_utils as utils  # pylint: disable=g-import-not-at-top
  from litezoo.conversion.litert import quant_attrs, quant_recipe, translate_recipe  # pylint: disable=g-import-not-at-top
  g, dtype = quant_attrs.Granularity, quant_attrs.Dtype
  layer = {
      "fp16": utils.create_layer_quant_fp16,
      "dynamic_int8": lambda: utils.create_layer_quant_dynamic(dtype.INT8, g.CHANNELWISE),
      "weight_only_int8": lambda: utils.create_layer_quant_weight_only(dtype.INT8, g.CHANNELWISE),
      "dynamic_int4_block32": lambda: utils.create_layer_quant_dynamic(dtype.INT4, g.BLOCKWISE_32),
      "dynamic_int4_block128": lambda: utils.create_layer_quant_dynamic(dtype.INT4,
                                                                        g.BLOCKWISE_128),
  }[name]()
  theirs = translate_recipe.translate_to_ai_edge_recipe(
      quant_recipe.GenerativeQuantRecipe(default=layer))
  manager = recipe_manager.RecipeManager()
  manager.load_quantization_recipe(recipes.resolve(name, tied_embedding=True))
  assert json.dumps(manager.get_quantization_recipe()) == json.dumps(theirs)


class Model:
  """A tiny variant's float artifact and its float logits on a prompt."""

  def __init__(self, name, signatures=SIGNATURES):
    self.spec = REGISTRY.get(name)
    self.uses = 2 * len(signatures.names)  # the lookup and the LM head of every signature
    self.config = self.spec.variant("tiny").config
    weights = pipeline.weights(self.spec, "tiny", log=lambda _: None)
    self.float = pipeline.artifact(self.spec, "tiny", weights, recipe="none",
                                   signatures=signatures, log=lambda _: None)
    rng = np.random.default_rng(0)
    self.prompt = [int(t) for t in rng.integers(3, self.config["vocab_size"], 16)]
    self.float_logits = runner.Runner(self.float.path).prefill(self.prompt)

  def quantize(self, recipe, tmp_path):
    return convert.quantize(self.spec, self.float, recipe, output_dir=tmp_path,
                            log=lambda _: None)


@pytest.fixture(scope="module")
def smollm2():  # tied embedding, hidden 64, intermediate 128
  return Model("smollm2")


@pytest.fixture(scope="module")
def tinyllama():  # untied LM head
  return Model("tinyllama", testing.TINY_SIGNATURES)


@pytest.mark.parametrize("recipe, types, table", [
    ("dynamic_int4_block32,embedding=int8", {"INT4", "INT8"}, "INT8"),
    ("dynamic_int8,embedding=int4", {"INT4", "INT8"}, "INT4"),
    ("dynamic_int4_block64:levels16,embedding=int8", {"INT4", "INT8"}, "INT8"),
    ("dynamic_int4_block32", {"INT4"}, "INT4"),
    ("dynamic_int8:hadamard", {"INT8"}, "INT8"),
    ("dynamic_int4_block32:octav,embedding=int8:octav", {"INT4", "INT8"}, "INT8"),
])
def test_the_tied_table_is_one_buffer_read_by_the_lookup_and_every_head(smollm2, recipe, types,
                                                                       table, tmp_path):
  artifact = smollm2.quantize(recipe, tmp_path)
  found = flatbuffer.weights(artifact.path)
  vocab, hidden = smollm2.config["vocab_size"], smollm2.config["hidden_size"]
  assert set(found.params_by_type) == types  # nothing left float
  assert found.largest_matrix == {"shape": [vocab, hidden], "buffers": 1, "uses": smollm2.uses,
                                  "types": [table]}
  assert artifact.manifest.weights["largest_matrix"] == found.largest_matrix
  # The file still computes the model (random tiny weights: loose, as for int8 in conformance).
  logits = runner.Runner(artifact.path).prefill(smollm2.prompt)
  assert np.abs(logits - smollm2.float_logits).max() < (0.25 if "int4" not in recipe else 1.0)


def test_the_float_file_itself_shares_the_table(smollm2):
  found = flatbuffer.weights(smollm2.float.path)
  assert found.largest_matrix["buffers"] == 1 and found.largest_matrix["uses"] == smollm2.uses


def _contents(raw):
  """The model in `raw` as plain values: every table's fields, each buffer as its bytes wherever
  the file stores them (inside the flatbuffer or at an offset after it)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
  for b in model.buffers:
    if b.offset > 1:
      b.data, b.offset, b.size = raw[b.offset:b.offset + b.size], 0, 0

  def plain(x):
    if isinstance(x, np.ndarray):
      return x.dtype.str, x.shape, x.tobytes()
    if isinstance(x, list):
      return [plain(v) for v in x]
    return {k: plain(v) for k, v in vars(x).items()} if hasattr(x, "__dict__") else x
  return model, plain(model)


@pytest.mark.parametrize("name, weights_outside", [("tinyllama", False), ("tinyllama", True),
                                                    ("smollm2", True)])
def test_signatures_share_one_copy_of_each_weights_quantization(name, weights_outside, request,
                                                                  tmp_path, monkeypatch):
  """conversion/compact.py against the quantizer's own file of the same recipe: the same model,
  table for table and buffer for buffer, smaller by at least every signature's copy but one of
  the per-channel scales and zero points, and bit-identical logits on both backends. The tiny
  models' weights fit inside the flatbuffer; `weights_outside` has the quantizer write them after
  it, at offsets, as it does from 256 KiB of weights on (every real model)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  from ai_edge_quantizer import model_modifier  # pylint: disable=g-import-not-at-top
  model = request.getfixturevalue(name)
  if weights_outside:
    monkeypatch.setattr(model_modifier.ModelModifier, "_serialize_small_model",
                        lambda self, m: self._serialize_model(  # pylint: disable=protected-access
                            m, model_modifier._PackedBufferData(m)))  # pylint: disable=protected-access
  shared = model.quantize("dynamic_int8", tmp_path / "shared").path.read_bytes()
  monkeypatch.setattr(compact, "share_vectors", bytearray)  # the quantizer's bytes, as they are
  plain = model.quantize("dynamic_int8", tmp_path / "plain").path.read_bytes()
  plain_model, plain_contents = _contents(plain)
  assert _contents(shared)[1] == plain_contents
  stored = schema.ModelT.InitFromObj(schema.Model.GetRootAs(shared, 0))
  assert any(b.offset > 1 for b in stored.buffers) == weights_outside
  copies = sum(4 * len(t.quantization.scale) + 8 * len(t.quantization.zeroPoint)
               for g in plain_model.subgraphs[1:] for t in g.tensors
               if t.quantization is not None and t.quantization.scale is not None
               and len(t.quantization.scale) > 1)
  assert len(plain_model.subgraphs) > 2 and copies > 0
  assert len(plain) - len(shared) >= copies, (len(plain), len(shared), copies)
  for backend in runner.BACKENDS:
    outputs = []
    for data in (shared, plain):
      run = runner.Runner(data, backend=backend, weight_cache=False, kv_layout="transposed")
      logits = [run.prefill(model.prompt)[0]]
      for _ in range(4):
        logits.append(run.decode(int(np.argmax(logits[-1]))))
      outputs.append(np.stack(logits))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_share_vectors_refuses_a_file_that_is_not_a_whole_tflite(tinyllama):
  with pytest.raises(ValueError, match="not a .tflite flatbuffer"):
    compact.share_vectors(b"PK\x03\x04 a zip file, say")
  with pytest.raises(ValueError, match="its flatbuffer has no subgraphs"):
    compact.share_vectors(b"\0\0\0\0TFL3")
  raw = tinyllama.float.path.read_bytes()
  with pytest.raises(ValueError, match="not a valid .tflite flatbuffer"):
    compact.share_vectors(raw[:len(raw) // 2])
  once = compact.share_vectors(raw)
  assert compact.share_vectors(once) == once


def test_an_untied_head_keeps_the_default_under_an_embedding_override(tinyllama, tmp_path):
  found = flatbuffer.weights(tinyllama.quantize("dynamic_int4_block32,embedding=int8",
                                                tmp_path).path)
  vocab, hidden = tinyllama.config["vocab_size"], tinyllama.config["hidden_size"]
  # Two [vocab, hidden] matrices, the lookup's int8 and the head's int4, one buffer each.
  assert found.largest_matrix == {"shape": [vocab, hidden], "buffers": 2,
                                  "uses": tinyllama.uses,
                                  "types": ["INT4", "INT8"]}


def test_gptq_of_an_untied_table_is_refused_before_any_work(tinyllama, tmp_path):
  """No linear layer reads an untied table, so nothing calibrates it: refused, not min-max
  under a manifest that says GPTQ. An empty --quantize is refused too, not read as unset."""
  weights = pipeline.weights(tinyllama.spec, "tiny", log=lambda _: None)
  with pytest.raises(export.QuantizeError, match=re.escape(
      "embedding=dynamic_int4_channel:gptq cannot apply: this model's embedding table is not "
      "tied to its LM head, so no layer's inputs calibrate it; write "
      "embedding=dynamic_int4_channel:levels16")):
    convert.convert(tinyllama.spec, "tiny", weights,
                    recipe="dynamic_int8,embedding=dynamic_int4_channel:gptq",
                    signatures=SIGNATURES, output_dir=tmp_path, log=lambda _: None,
                    calibration=pipeline.calibration_windows(tinyllama.spec, "tiny", weights,
                                                             log=lambda _: None))
  assert not list(tmp_path.iterdir())
  with pytest.raises(recipes.UnknownRecipeError, match=re.escape(
      "embedding=dynamic_int8:gptq cannot apply: this model's embedding table is not tied to "
      "its LM head, so no layer's inputs calibrate it; write embedding=dynamic_int8 (min-max)")):
    recipes.check_tied("dynamic_int8:gptq,embedding=int8:gptq", tied_embedding=False)
  # The tools refuse it before any conversion or lock: nothing in the cache, no progress lines.
  # evaluate refuses a recipe named by --quantize rather than leaving it out of the table.
  cache = tmp_path / "cache"
  for tool, args in (("generate", ("--prompt=hi",)), ("evaluate", (f"--output_dir={tmp_path}",)),
                     ("verify", ())):
    run = testing.run_tool(tool, "--model=tinyllama", "--variant=tiny",
                           "--quantize=dynamic_int8,embedding=int8:gptq", *args,
                           env={"LITEZOO_CACHE": str(cache)})
    assert testing.one_line_error(run, tool).endswith(
        "embedding=dynamic_int8:gptq cannot apply: this model's embedding table is not tied to "
        "its LM head, so no layer's inputs calibrate it; write embedding=dynamic_int8 (min-max)")
    assert "quantizing" not in run.stderr and "converting" not in run.stderr
    # Only the tiny random checkpoint and its tokenizer: no artifact, no lock.
    assert {p.relative_to(cache).parts[0] for p in cache.iterdir()} <= {"random", "tokenizers"}
  run = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny", "--quantize= ",
                         f"--output_dir={tmp_path}")
  assert testing.one_line_error(run, "convert") == (
      "convert: error: --quantize is empty: give a recipe (e.g. dynamic_int8), or leave the "
      "flag out for the default")
  assert not list(tmp_path.glob("*.tflite"))


def test_component_overrides_reach_their_components(tinyllama, tmp_path):
  """attention=/feedforward= cover exactly their blocks' matrices (counted from the config)."""
  c = tinyllama.config
  hidden, inter, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
  kv = c["num_key_value_heads"] * hidden // c["num_attention_heads"]
  attention = layers * (hidden * hidden * 2 + 2 * hidden * kv)
  feedforward = layers * 3 * hidden * inter
  found = flatbuffer.weights(tinyllama.quantize(
      "weight_only_int8,attention=dynamic_int4_block32,feedforward=fp16", tmp_path).path)
  assert found.params_by_type["INT4"] == attention
  assert found.params_by_type["FLOAT16"] == feedforward
  assert found.params_by_type["INT8"] == 2 * c["vocab_size"] * hidden


@pytest.mark.parametrize("recipe", [
    "dynamic_int4_block32,feedforward=fp16,down_proj=int8",
    "dynamic_int4_block32,down_proj=int8,feedforward=fp16",  # the narrower one wins either way
])
def test_down_proj_overrides_the_feedforward_it_is_part_of(tinyllama, recipe, tmp_path):
  c = tinyllama.config
  hidden, inter, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
  found = flatbuffer.weights(tinyllama.quantize(recipe, tmp_path).path)
  assert found.params_by_type["INT8"] == layers * hidden * inter  # the down projections
  assert found.params_by_type["FLOAT16"] == layers * 2 * hidden * inter  # gate and up
  assert recipes.check(recipe) == "dynamic_int4_block32,down_proj=dynamic_int8,feedforward=fp16"
  # What the manifest says each part got; without its own override down_proj follows feedforward.
  assert {c: d["recipe"] for c, d in recipes.describe(recipe)["components"].items()} == {
      "embedding": "dynamic_int4_block32", "attention": "dynamic_int4_block32",
      "feedforward": "fp16", "down_proj": "dynamic_int8"}
  assert recipes.describe("int4,feedforward=int8")["components"]["down_proj"]["recipe"] == (
      "dynamic_int8")


@pytest.mark.parametrize("recipe, message", [
    ("dynamic_int4_block128", "the default dynamic_int4_block128 cannot apply: its blocks of 128 "
     "do not divide the 64 inputs of lm_head"),
    # Named by its component, and refused before GPTQ calibrates (no weights are given here).
    ("dynamic_int4_block32:gptq,down_proj=dynamic_int4_block256:gptq",
     "down_proj=dynamic_int4_block256:gptq cannot apply: its blocks of 256 do not divide the 128 "
     "inputs of transformer_blocks.0.ff.w2"),
])
def test_block_sizes_that_do_not_divide_are_refused(smollm2, recipe, message, tmp_path):
  assert smollm2.config["hidden_size"] == 64 and smollm2.config["intermediate_size"] == 128
  with pytest.raises(export.QuantizeError, match=re.escape(message)):
    smollm2.quantize(recipe, tmp_path)
  assert not list(tmp_path.glob("*.tflite"))
  # A conversion straight from the weights refuses it as early: before the export and before
  # calibration (no windows are needed to be refused), leaving nothing behind.
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  logged = []
  with pytest.raises(export.QuantizeError, match=re.escape(message)):
    convert.convert(smollm2.spec, "tiny", weights, recipe=recipe, signatures=SIGNATURES,
                    output_dir=tmp_path, calibration=[[1, 2, 3]], log=logged.append)
  assert not logged and not list(tmp_path.iterdir())


def test_an_untied_lm_head_follows_the_default_in_the_block_check():
  """embedding= reaches an untied LM head in no file (resolve matches the lookup alone), so the
  head's width is checked against the default's blocks, and the fix says so."""
  inputs = {"tok_embedding": 64, "lm_head": 64, "transformer_blocks.0.ff.w2": 128}
  recipe = "dynamic_int4_block128,embedding=int8,attention=int8,feedforward=int8"
  recipes.check_blocks(recipe, inputs, tied_embedding=True)  # the head is the int8 table
  with pytest.raises(recipes.UnknownRecipeError, match=re.escape(
      "the default dynamic_int4_block128 cannot apply: its blocks of 128 do not divide the 64 "
      "inputs of lm_head; pick a block size that divides 64 (32 or 64 usually do), or an int8 "
      "default: no override reaches lm_head on this model")):
    recipes.check_blocks(recipe, inputs, tied_embedding=False)
  with pytest.raises(recipes.UnknownRecipeError, match=re.escape(
      "feedforward=dynamic_int4_block256 cannot apply: its blocks of 256 do not divide the 128 "
      "inputs of transformer_blocks.0.ff.w2; pick a block size that divides 128 (32 or 64 "
      "usually do), or down_proj=int8")):
    recipes.check_blocks("int8,feedforward=dynamic_int4_block256", inputs)


def _tensors(path):
  """(raw bytes, model, subgraph 0, its tensors) of the .tflite at `path`."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  raw = open(path, "rb").read()
  model = schema.Model.GetRootAs(raw, 0)
  subgraph = model.Subgraphs(0)
  return raw, model, subgraph, [subgraph.Tensors(i) for i in range(subgraph.TensorsLength())]


def _tensor(path, shape, kind=None):
  """(raw, model, subgraph, tensor): the first tensor of subgraph 0 shaped `shape` (of the
  schema's TensorType `kind`, e.g. "INT4", if given)."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  raw, model, subgraph, tensors = _tensors(path)
  for tensor in tensors:
    if list(tensor.ShapeAsNumpy()) == list(shape) and (
        kind is None or tensor.Type() == getattr(schema.TensorType, kind)):
      return raw, model, subgraph, tensor
  raise AssertionError(f"no {kind or ''} tensor of shape {list(shape)} in {path}")


def _channel_scales(tensor, shape):
  """Per-channel float32 scales [out, 1], kept in the tensor's own quantization."""
  assert tensor.Quantization().QuantizedDimension() == 0
  return tensor.Quantization().ScaleAsNumpy().reshape(shape[0], 1)


def _int4_table(path, shape):
  """The int4 values [out, in] and block scales [out, in/block] (per channel: [out, 1]) of the
  matrix of `shape`."""
  from ai_edge_litert import schema_py_generated as schema  # pylint: disable=g-import-not-at-top
  _, model, subgraph, tensor = _tensor(path, shape, "INT4")
  packed = model.Buffers(tensor.Buffer()).DataAsNumpy()
  low, high = (packed & 0xF).astype(np.int8), (packed >> 4).astype(np.int8)
  values = np.stack([low, high], -1).reshape(shape)  # low nibble first
  values = np.where(values > 7, values - 16, values)
  details = tensor.Quantization().Details()
  if details is None:  # per channel
    return values, _channel_scales(tensor, shape)
  block = schema.BlockwiseQuantization()
  block.Init(details.Bytes, details.Pos)
  scale_tensor = subgraph.Tensors(block.Scales())
  scales = model.Buffers(scale_tensor.Buffer()).DataAsNumpy().view(np.float16)
  return values, scales.reshape(shape[0], -1).astype(np.float32)


def _int8_table(path, shape):
  """The int8 values [out, in] and per-channel float32 scales [out, 1] of the matrix of
  `shape`."""
  _, model, _, tensor = _tensor(path, shape, "INT8")
  values = model.Buffers(tensor.Buffer()).DataAsNumpy().view(np.int8).reshape(shape)
  return values, _channel_scales(tensor, shape)


def _float_table(path, shape):
  raw, model, _, tensor = _tensor(path, shape)
  return flatbuffer._values(raw, model.Buffers(tensor.Buffer())).reshape(shape)  # pylint: disable=protected-access


def test_levels16_uses_minus_8_as_llama_cpp_q4_0_does(smollm2, tmp_path):
  from gguf import quants, GGMLQuantizationType  # pylint: disable=g-import-not-at-top
  shape = (smollm2.config["vocab_size"], smollm2.config["hidden_size"])
  w = _float_table(smollm2.float.path, shape)
  plain, plain_scales = _int4_table(smollm2.quantize("dynamic_int4_block32", tmp_path / "a").path,
                                    shape)
  ours, scales = _int4_table(smollm2.quantize("dynamic_int4_block32:levels16",
                                              tmp_path / "b").path, shape)
  assert plain.min() >= -7  # the quantizer's own min-max: 15 levels
  blocks = w.reshape(-1, 32)
  negative = -blocks.min(1) > blocks.max(1)  # blocks whose largest magnitude is negative
  assert 0.3 < negative.mean() < 0.7
  got = ours.reshape(-1, 32)
  assert (got[negative].min(1) == -8).all() and (got[~negative].min(1) >= -7).all()
  # Q4_0 by gguf-py (ggml's reference: d = extreme / -8, fp16): on the blocks with a negative
  # extreme, d > 0 and ours is the same grid up to our bf16 scale rounding.
  q40 = np.frombuffer(quants.quantize(w, GGMLQuantizationType.Q4_0).tobytes(), np.uint8)
  q40 = q40.reshape(-1, 18)
  d = q40[:, :2].copy().view(np.float16)[:, 0].astype(np.float32)
  nibbles = np.concatenate([q40[:, 2:] & 0xF, q40[:, 2:] >> 4], 1).astype(np.int8) - 8
  np.testing.assert_allclose(scales.reshape(-1)[negative], d[negative], rtol=2**-8)
  assert (nibbles[negative] == got[negative]).mean() > 0.97
  # And the error is lower than the 15-level grid's on those blocks.
  err16 = np.abs(got * scales.reshape(-1, 1) - blocks)[negative].mean()
  err15 = np.abs(plain.reshape(-1, 32) * plain_scales.reshape(-1, 1) - blocks)[negative].mean()
  assert err16 < err15


# --- gptq: GPTQ on calibration text (conversion/gptq.py) ---------------------------------------


def _layer(rng, rows=48, cols=128, samples=512):
  """A weight [rows, cols] and the Hessian X^T X of correlated inputs X [samples, cols] with a
  few large channels, as a transformer's layer inputs have."""
  x = rng.standard_normal((samples, cols)) @ rng.standard_normal((cols, cols))
  x[:, :4] *= 8
  return rng.standard_normal((rows, cols)).astype(np.float32), x.T @ x


def _output_error(w, codes, scales, h, block=32):
  q = (codes.reshape(len(w), -1, block) * scales[:, :, None]).reshape(w.shape)
  e = (w - q).astype(np.float64)
  return float(np.trace(e @ h @ e.T))


def _obs_reference(w, h, scales, order, block=32, damp=0.01, grid=(-8, 7)):
  """GPTQ from the paper's equations, the slow direct way (Frantar et al. 2023, eqs. 2-3): in
  `order`, quantize column q, spread its error over the columns left with the inverse Hessian of
  those columns, then drop q from that inverse by one Gaussian elimination step."""
  w = w.astype(np.float64).copy()
  h = h + damp * np.mean(np.diag(h)) * np.eye(len(h))
  hinv = np.linalg.inv(h)
  codes = np.zeros(w.shape, np.int8)
  left = list(order)
  for q in order:
    s = scales[:, q // block].astype(np.float64)
    codes[:, q] = np.clip(np.round(w[:, q] / s), *grid)
    err = (w[:, q] - codes[:, q] * s) / hinv[q, q]
    w[:, left] -= np.outer(err, hinv[q, left])
    hinv -= np.outer(hinv[:, q], hinv[q, :]) / hinv[q, q]
    left.remove(q)
  return codes


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_gives_the_codes_of_the_papers_sequential_updates(act_order):
  """The Cholesky form (the paper's section 3.3, lazy batches of 128 columns) is the same
  algorithm as re-inverting the Hessian after every column; with the same scales both choose
  the same int4 codes, in the natural column order and in decreasing diag(H) (act order)."""
  w, h = _layer(np.random.default_rng(0))
  blocks = w.reshape(len(w), -1, 32)
  scales = int4_levels.scales(blocks.min(2), blocks.max(2), True)
  codes, got = gptq.solve(w, h, 32, static_scales=scales, act_order=act_order)
  np.testing.assert_array_equal(got, scales)
  order = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(w.shape[1])
  assert (codes == _obs_reference(w, h, scales, order)).mean() > 0.999
  assert codes.min() == -8 and codes.max() <= 7


def test_the_scale_search_never_does_worse_than_the_plain_grid_on_its_own_measure():
  w, h = _layer(np.random.default_rng(2))
  importance = np.diag(h)
  blocks = w.reshape(len(w), -1, 32)
  plain = int4_levels.scales(blocks.min(2), blocks.max(2), True)
  found = gptq.search_scales(w, importance, 32)
  np.testing.assert_array_equal(int4_levels.bf16(found), found)  # what the runtime reads

  def error(scales):
    q = np.clip(np.round(blocks / scales[:, :, None]), -8, 7) * scales[:, :, None]
    return ((blocks - q) ** 2 * importance.reshape(1, -1, 32)).sum(2)

  assert (error(found) <= error(plain) + 1e-9).all() and (found <= plain).all()
  assert (found < plain).mean() > 0.2  # clipping paid off in many blocks


def test_gptq_lowers_the_layers_output_error_below_rounding_to_nearest():
  w, h = _layer(np.random.default_rng(1))
  blocks = w.reshape(len(w), -1, 32)
  scales = int4_levels.scales(blocks.min(2), blocks.max(2), True)
  nearest = np.clip(np.round(blocks / scales[:, :, None]), -8, 7).reshape(w.shape)
  rtn = _output_error(w, nearest, scales, h)
  for act_order in (False, True):
    codes, gptq_scales = gptq.solve(w, h, 32, act_order=act_order)
    assert _output_error(w, codes, gptq_scales, h) < 0.7 * rtn
  # Unused inputs (a zero row and column in H) cannot matter: their weights become 0.
  h[:, 5] = h[5, :] = 0
  codes, _ = gptq.solve(w, h, 32)
  assert not codes[:, 5].any()
  with pytest.raises(ValueError, match="block size 48 does not divide the weight's 128 input"):
    gptq.solve(w, h, 48)


def test_int8_gptq_keeps_the_quantizers_grid_and_lowers_the_output_error():
  """bits=8: one float32 scale per row, max|w| / 127 as the quantizer's symmetric int8 sets it
  (without act order), codes in -127..127 (the TFLite int8 weight range, no -128), the paper's
  sequential updates, and a lower output error than rounding to nearest on the same grid."""
  w, h = _layer(np.random.default_rng(3))
  cols = w.shape[1]
  scale = np.abs(w).max(1, keepdims=True) / 127
  codes, got = gptq.solve(w, h, cols, act_order=False, bf16_scales=False, bits=8)
  np.testing.assert_allclose(got, scale, rtol=1e-6)
  assert codes.min() >= -127 and codes.max() <= 127 and np.abs(codes).max() == 127
  assert (codes == _obs_reference(w, h, scale, np.arange(cols), block=cols,
                                  grid=(-127, 127))).mean() > 0.999
  nearest = np.clip(np.round(w / scale), -127, 127)
  rtn = _output_error(w, nearest, scale, h, block=cols)
  assert _output_error(w, codes, got, h, block=cols) < 0.7 * rtn
  found, searched = gptq.solve(w, h, cols, bf16_scales=False, bits=8)  # act order, scale search
  assert (searched <= scale * (1 + 1e-6)).all()
  assert _output_error(w, found, searched, h, block=cols) < 0.7 * rtn
  with pytest.raises(ValueError, match="GPTQ solves for 4 or 8 bits, not 6"):
    gptq.solve(w, h, cols, bits=6)


def test_a_gptq_file_holds_the_solvers_codes_and_keeps_the_table_one_buffer(smollm2, tmp_path):
  """pipeline.artifact calibrates on quant/data/lcet10.txt, solves each weight once and writes its
  codes for every op that reads it: read back from the file, a projection holds exactly what
  the solver gives for the Hessian the PyTorch model collects on the same windows."""
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  recipe = "dynamic_int4_block32:gptq,embedding=int8"
  artifact = pipeline.artifact(smollm2.spec, "tiny", weights, recipe=recipe,
                               signatures=SIGNATURES, log=lambda _: None)
  assert artifact.manifest.recipe["calibration"]["text"] == "lcet10.txt"
  found = flatbuffer.weights(artifact.path)
  c = smollm2.config
  assert set(found.params_by_type) == {"INT4", "INT8"}
  assert found.largest_matrix["buffers"] == 1 and found.largest_matrix["types"] == ["INT8"]
  # The down projection of the last layer: [hidden, intermediate], GPTQ against its Hessian.
  shape = (c["hidden_size"], c["intermediate_size"])
  stored, scales = _int4_table(artifact.path, shape)
  windows = pipeline.calibration_windows(smollm2.spec, "tiny", weights, log=lambda _: None)
  hessians = convert.calibrate(smollm2.spec, "tiny", weights, windows)
  model, _ = convert.load_model(smollm2.spec, "tiny", weights, 16, log=lambda _: None)
  down = [m.weight.detach().numpy() for name, m in model.named_modules()
          if name.endswith("down_proj") or name.endswith("ff.w2")]
  solved = {gptq.digest(w): gptq.solve(w, hessians[gptq.digest(w)], 32) for w in down}
  # Calibration stops at the LM head: the tied table's H is still that of the head's inputs, the
  # final norm's outputs over every window, collected here by a full pass of each window.
  length = max(len(w) for w in windows)
  full, _ = convert.load_model(smollm2.spec, "tiny", weights, length, log=lambda _: None)
  head_inputs = []
  handle = full.final_norm.register_forward_hook(
      lambda module, inputs, output: head_inputs.append(output.reshape(-1, output.shape[-1])))
  decoder = TorchDecoder(full, length)
  for window in windows:
    decoder.reset()
    decoder.prefill(list(window))
  handle.remove()
  expected = sum((x.T @ x).double() for x in head_inputs).numpy()
  table = full.tok_embedding.weight.detach().numpy()
  np.testing.assert_allclose(hessians[gptq.digest(table)], expected, rtol=1e-12)
  assert any(np.array_equal(codes, stored) and np.allclose(s, scales) for codes, s in
             solved.values()), "the file's int4 codes are not the solver's"
  nearest, _ = _int4_table(smollm2.quantize("dynamic_int4_block32:levels16,embedding=int8",
                                            tmp_path).path, shape)
  assert (nearest != stored).mean() > 0.05  # GPTQ moved codes off the nearest level
  logits = runner.Runner(artifact.path).prefill(smollm2.prompt)
  assert np.abs(logits - smollm2.float_logits).max() < 1.0
  # A second gptq recipe in the same process reuses the calibration: the model is not run again.
  runs = []
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(gptq, "hessians", lambda *a, **k: runs.append(a))
    int4_table = pipeline.artifact(smollm2.spec, "tiny", weights,
                                   recipe="dynamic_int4_block32:gptq", signatures=SIGNATURES,
                                   log=lambda _: None)
  assert not runs
  again, _ = _int4_table(int4_table.path, shape)
  assert np.array_equal(again, stored)


def _rotation(cols, size):
  """The block-diagonal orthonormal Hadamard matrix [cols, cols] with blocks of `size`, from
  scipy's Sylvester construction (not the quantizer's)."""
  import scipy.linalg  # pylint: disable=g-import-not-at-top
  return np.kron(np.eye(cols // size), scipy.linalg.hadamard(size) / np.sqrt(size))


def _hadamard_sizes(path):
  """The sizes of the Hadamard matrices a file multiplies layer inputs by at run time."""
  shapes = [tuple(t.ShapeAsNumpy()) for t in _tensors(path)[3]
            if t.Name().decode().endswith("hadamard_matrix")]
  assert all(len(set(shape)) == 1 for shape in shapes), shapes  # square
  return {shape[0] for shape in shapes}


def _rotated_down_projection(smollm2, recipe, table=_int4_table, **solve_args):
  """A down projection [64, 128] of the tiny SmolLM2 file `recipe` wrote: (the file, its
  values (`table`: int4 or int8), its scales, and GPTQ's (codes, scales) of each layer's down
  projection rotated by scipy's Hadamard blocks of 32, solved here against the rotated Hessian
  R^T H R)."""
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  shape = (smollm2.config["hidden_size"], smollm2.config["intermediate_size"])
  artifact = pipeline.artifact(smollm2.spec, "tiny", weights, recipe=recipe,
                               signatures=SIGNATURES, log=lambda _: None)
  stored, scales = table(artifact.path, shape)
  windows = pipeline.calibration_windows(smollm2.spec, "tiny", weights, log=lambda _: None)
  hessians = convert.calibrate(smollm2.spec, "tiny", weights, windows)
  model, _ = convert.load_model(smollm2.spec, "tiny", weights, 16, log=lambda _: None)
  rotation = _rotation(shape[1], 32)
  solved = [gptq.solve((w @ rotation).astype(np.float32),
                       rotation.T @ hessians[gptq.digest(w)] @ rotation, **solve_args)
            for name, module in model.named_modules() if name.endswith("ff.w2")
            for w in [module.weight.detach().numpy()]]
  return artifact, stored, scales, solved


def test_gptq_hadamard_holds_the_codes_of_the_rotated_weights_and_rotates_the_inputs(smollm2):
  """`gptq:hadamard`: each weight W is rotated by blocks of 32 (R, Hadamard), solved by GPTQ
  against the Hessian of the rotated inputs R^T H R, and the file rotates the op's input at run
  time, so it still computes the model. With the table int4 too, it stays one buffer."""
  artifact, stored, scales, solved = _rotated_down_projection(
      smollm2, "dynamic_int4_block32:gptq:hadamard,embedding=int8", block=32)
  assert any(np.array_equal(codes, stored) and np.allclose(s, scales) for codes, s in solved), (
      "the file's int4 codes are not GPTQ's of the rotated weight")
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  plain, _ = _int4_table(pipeline.artifact(
      smollm2.spec, "tiny", weights, recipe="dynamic_int4_block32:gptq,embedding=int8",
      signatures=SIGNATURES, log=lambda _: None).path, stored.shape)
  assert (plain != stored).mean() > 0.3  # other codes: they stand for W R, not W
  # Codes of W R read against unrotated inputs would give another model; the inserted rotation
  # makes it the same one (measured 0.026 against 0.021 for gptq alone).
  logits = runner.Runner(artifact.path).prefill(smollm2.prompt)
  assert np.abs(logits - smollm2.float_logits).max() < 0.1
  table = pipeline.artifact(smollm2.spec, "tiny", weights, recipe="dynamic_int4_block32:gptq:hadamard",
                            signatures=SIGNATURES, log=lambda _: None)
  found = flatbuffer.weights(table.path)
  c = smollm2.config
  assert set(found.params_by_type) == {"INT4"}
  assert found.largest_matrix == {"shape": [c["vocab_size"], c["hidden_size"]], "buffers": 1,
                                  "uses": smollm2.uses, "types": ["INT4"]}
  assert np.abs(runner.Runner(table.path).prefill(smollm2.prompt)
                - smollm2.float_logits).max() < 1.0


def test_per_channel_gptq_hadamard_holds_one_float_scale_per_row(smollm2):
  """`dynamic_int4_channel:gptq:hadamard`: the rotated GPTQ above with one float32 scale per row
  (a block as wide as the row, scales not rounded through bf16), the layout of XNNPACK's
  per-channel int4 kernels; the file still computes the model."""
  cols = smollm2.config["intermediate_size"]
  artifact, stored, scales, solved = _rotated_down_projection(
      smollm2, "dynamic_int4_channel:gptq:hadamard,embedding=int8", block=cols,
      bf16_scales=False)
  assert scales.shape == (len(stored), 1)
  assert any(np.array_equal(codes, stored) and np.allclose(s, scales, rtol=1e-6)
             for codes, s in solved), "the file's codes are not GPTQ's of the rotated weight"
  assert not np.array_equal(scales, int4_levels.bf16(scales))  # float32 scales, not bf16 ones
  logits = runner.Runner(artifact.path).prefill(smollm2.prompt)
  assert np.abs(logits - smollm2.float_logits).max() < 0.1


def test_int8_gptq_hadamard_holds_the_codes_of_the_rotated_weights_and_shares_the_table(smollm2):
  """`dynamic_int8:gptq:hadamard`: the weights rotated by Hadamard blocks of 32, as
  `dynamic_int8:hadamard` rotates them, solved by GPTQ on the quantizer's int8 grid; the tied
  table stays one int8 buffer; the file computes the model."""
  cols = smollm2.config["intermediate_size"]
  artifact, stored, scales, solved = _rotated_down_projection(
      smollm2, "dynamic_int8:gptq:hadamard", table=_int8_table, block=cols, bf16_scales=False,
      bits=8)
  # int8's step is 16 times finer than int4's: the quantizer's float32 rotation and scipy's
  # float64 one put a few weights on the other side of a rounding boundary (0.2% measured).
  assert any((codes == stored).mean() > 0.99 and np.abs(codes - stored.astype(int)).max() <= 1
             and np.allclose(s, scales, rtol=1e-6) for codes, s in solved), (
      "the file's int8 codes are not GPTQ's of the rotated weight")
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  minmax = pipeline.artifact(smollm2.spec, "tiny", weights, recipe="dynamic_int8:hadamard",
                             signatures=SIGNATURES, log=lambda _: None)
  nearest, _ = _int8_table(minmax.path, stored.shape)
  assert (nearest != stored).mean() > 0.05  # GPTQ moved codes off the nearest level
  # Both rotate by 32x32 blocks at run time (whole rows halved int8 decode on TinyLlama 1.1B).
  for path in (artifact.path, minmax.path):
    assert _hadamard_sizes(path) == {32}
  found = flatbuffer.weights(artifact.path)
  c = smollm2.config
  assert set(found.params_by_type) == {"INT8"}
  assert found.largest_matrix == {"shape": [c["vocab_size"], c["hidden_size"]], "buffers": 1,
                                  "uses": smollm2.uses, "types": ["INT8"]}
  # Codes of W R read against unrotated inputs would give another model (measured 0.007, as
  # min-max's 0.006; a random tiny model is no test of which is closer on real text).
  logits = runner.Runner(artifact.path).prefill(smollm2.prompt)
  assert np.abs(logits - smollm2.float_logits).max() < 0.05
  assert artifact.manifest.recipe["description"].endswith("int8 per channel")


def test_a_calibrated_recipe_needs_the_weights_and_its_cache_key_names_the_text(smollm2,
                                                                               tmp_path):
  with pytest.raises(convert.ConvertError, match="dynamic_int4_block32:gptq is calibrated: "
                     "quantizing it needs the weights and the calibration windows"):
    smollm2.quantize("dynamic_int4_block32:gptq", tmp_path)
  weights = pipeline.weights(smollm2.spec, "tiny", log=lambda _: None)
  with pytest.raises(convert.ConvertError, match="it needs calibration windows"):
    convert.convert(smollm2.spec, "tiny", weights, recipe="dynamic_int4_block32:gptq",
                    signatures=SIGNATURES, output_dir=tmp_path, log=lambda _: None)
  assert not list(tmp_path.iterdir())
  from litezoo.artifacts import cache  # pylint: disable=g-import-not-at-top
  from litezoo.quant import calibration  # pylint: disable=g-import-not-at-top
  keys = [cache.key(smollm2.spec, "tiny", r, SIGNATURES, weights)
          for r in ("dynamic_int4_block32:gptq", "dynamic_int4_block32:levels16")]
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(calibration, "WINDOWS", calibration.WINDOWS + 1)  # another calibration
    again = [cache.key(smollm2.spec, "tiny", r, SIGNATURES, weights)
             for r in ("dynamic_int4_block32:gptq", "dynamic_int4_block32:levels16")]
  assert again[0] != keys[0] and again[1] == keys[1]


def test_a_release_quantizes_a_float_artifact_with_gptq_as_the_pipeline_does(tinyllama, tmp_path):
  """tools/releases quantize_step (a zoo_artifact with `float`, bazel/artifact.bzl) calibrates on
  the variant's weights and writes the bytes convert.quantize writes given them directly; the
  Bazel-built one (//tests:tinyllama_tiny_gptq) is the same file."""
  from litezoo.tools.releases import pins as release  # pylint: disable=g-import-not-at-top
  recipe = "dynamic_int4_block32:gptq"
  weights = pipeline.weights(tinyllama.spec, "tiny", log=lambda _: None)
  windows = pipeline.calibration_windows(tinyllama.spec, "tiny", weights, log=lambda _: None)
  direct = convert.quantize(tinyllama.spec, tinyllama.float, recipe, output_dir=tmp_path / "direct",
                            calibration=windows, weights=weights, log=lambda _: None)
  out = tmp_path / "release" / "tiny_gptq.tflite"
  out.parent.mkdir()
  release.quantize_step(tinyllama.spec, "tiny", tinyllama.float.path, recipe, out,
                        log=lambda _: None)
  released = manifest_lib.Artifact.read(out)
  assert released.manifest.recipe == direct.manifest.recipe
  assert released.manifest.recipe["calibration"]["text"] == "lcet10.txt"
  # TinyLlama's table is untied: the gptq default reaches it as min-max, and the manifest says so.
  table = direct.manifest.recipe["components"]["embedding"]
  assert table["recipe"] == recipe and table["description"].endswith(
      "this table is not tied to the LM head, so no layer's inputs calibrate it: min-max on the "
      "same grid")
  assert "not tied" not in direct.manifest.recipe["components"]["attention"]["description"]
  assert out.read_bytes() == direct.path.read_bytes()
  assert sorted(p.name for p in out.parent.iterdir()) == ["tiny_gptq.manifest.json",
                                                          "tiny_gptq.tflite"]
  built = testing.zoo_artifact("//tests:tinyllama_tiny_gptq", weights, required=False)
  if built is not None:
    assert built.path.read_bytes() == direct.path.read_bytes()


def test_quantizing_to_none_is_refused(tinyllama, tmp_path):
  with pytest.raises(convert.ConvertError, match="is already the float32 .none. artifact"):
    tinyllama.quantize("none", tmp_path)
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [
    (("--float={d}/missing.tflite", "--out={d}/o.tflite"),
     "--float={d}/missing.tflite is not a file: give a converted float .tflite"),
    (("--float={d}/f.tflite", "--out={d}/f.tflite"),
     "--out is the --float file: write the quantized artifact elsewhere"),
    (("--float={d}/f.tflite", "--out={d}/nodir/o.tflite"),
     "--out={d}/nodir/o.tflite must be a file path in an existing directory"),
    (("--float={d}/f.tflite", "--out={d}"),
     "--out={d} must be a file path in an existing directory"),
])
def test_the_artifact_tool_refuses_paths_that_cannot_work(args, message, tmp_path):
  """Found by a first-hour trial: these gave tracebacks, and --out=--float overwrote the input."""
  (tmp_path / "f.tflite").write_bytes(b"kept")
  run = testing.run_tool("artifact", "--model=tinyllama", "--variant=tiny",
                         "--quantize=dynamic_int8", *(a.format(d=tmp_path) for a in args))
  assert testing.one_line_error(run, "artifact").endswith(message.format(d=tmp_path))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tflite"]
  assert (tmp_path / "f.tflite").read_bytes() == b"kept"


def test_the_artifact_tool_refuses_weights_for_an_uncalibrated_quantization(tmp_path):
  (tmp_path / "float.tflite").write_bytes(b"kept")
  run = testing.run_tool("artifact", "--model=tinyllama", "--variant=tiny",
                         "--quantize=dynamic_int8", f"--float={tmp_path / 'float.tflite'}",
                         f"--weights={tmp_path / 'model.safetensors'}",
                         f"--out={tmp_path / 'out.tflite'}")
  assert testing.one_line_error(run, "artifact").endswith(
      "--weights cannot apply with --float and dynamic_int8: only a calibrated recipe (gptq) "
      "reads the weights again")
  assert [p.name for p in tmp_path.iterdir()] == ["float.tflite"]

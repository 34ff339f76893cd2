"""GGUF import for every family llama.cpp writes: a tiny GGUF written the way llama.cpp's
convert_hf_to_gguf writes that architecture (its tensor names from gguf-py's MODEL_TENSORS, its
metadata keys, its changes to tensors: Llama-lineage q/k rows permuted, Gemma's norms + 1), then
imported by its metadata alone (`--checkpoint=FILE.gguf`, no plugin) and compared with
transformers' model of the weights it was written from."""

import dataclasses

import gguf
import numpy as np
import pytest
import transformers

from litezoo import families, pipeline
from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.sources import weights
from litezoo.tests import family_configs, testing

# Family -> (the config written, what llama.cpp does to a tensor: (HF name, array, config) -> array)
_PERMUTED = ("q_proj.weight", "k_proj.weight")


def _permute(name, array, config):
  """llama.cpp's LlamaModel.permute: transformers' rotate-half rows -> interleaved pairs."""
  if not name.endswith(_PERMUTED):
    return array
  heads = config["num_attention_heads"] if "q_proj" in name else config["num_key_value_heads"]
  rows = array.shape[0]
  return (array.reshape(heads, 2, rows // heads // 2, *array.shape[1:])
          .swapaxes(1, 2).reshape(array.shape))


def _plus_one_norms(name, array, config):
  del config
  return array + 1.0 if "norm" in name else array


def _as_is(name, array, config):
  del name, config
  return array


CASES = {
    "gemma": (registry.Registry().get("gemma").variant("tiny").config, _plus_one_norms),
    "qwen2": (family_configs.TINY["qwen2"], _as_is),
    "qwen3": (family_configs.TINY["qwen3"], _as_is),
    "gemma2": ({**family_configs.TINY["gemma2"], "query_pre_attn_scalar": 16}, _plus_one_norms),
    "phi3": (family_configs.TINY["phi3"], _as_is),
    "phi3_longrope": (family_configs.TINY["phi3_longrope"], _as_is),
    # llama.cpp has no no_rope_layers key: every fourth layer, as transformers' default.
    "smollm3": ({**{k: v for k, v in family_configs.TINY["smollm3"].items()
                    if k != "no_rope_layers"}, "num_hidden_layers": 4}, _permute),
    "olmo2": (family_configs.TINY["olmo2"], _as_is),
    "granite": (family_configs.TINY["granite"], _permute),
    # As llama.cpp's Phi2Model writes it: feed_forward_length is 4 x embedding_length there, and
    # the rotated dimensions per head a whole number (Phi-2: 0.4 x 80).
    "phi": ({**registry.Registry().get("phi2").variant("tiny").config, "hidden_size": 80,
             "intermediate_size": 320}, _as_is),
    "llama": ({**family_configs.TINY["llama3"], "rope_scaling": None,
                     "max_position_embeddings": 2048}, _permute),
}


def _family(config):
  return families.by_model_type(config["model_type"])


def _write(path, config, original, change):
  """The GGUF llama.cpp would write for `original` (float32 tensors, metadata of the family's
  map)."""
  family = _family(config)
  names = {hf: g for g, hf in family.gguf.names.items()}
  resolved = transformers.AutoConfig.for_model(**config).to_dict()
  rope = resolved["rope_parameters"]
  resolved["rope_theta"] = rope["rope_theta"]
  head_dim = resolved.get("head_dim") or resolved["hidden_size"] // resolved["num_attention_heads"]
  # What llama.cpp's Phi3MiniModel writes: the rotated dimensions, LongRoPE's factors as tensors.
  resolved["gguf_rope_dimension_count"] = int(head_dim * rope.get("partial_rotary_factor", 1.0))
  writer = gguf.GGUFWriter(str(path), family.gguf.architecture)
  if rope.get("rope_type") == "longrope":
    for kind in ("short", "long"):
      writer.add_tensor(f"rope_factors_{kind}.weight",
                        np.array(rope[f"{kind}_factor"], dtype=np.float32))
  for hf_key, gguf_key in family.gguf.config_keys.items():
    value = resolved.get(hf_key)
    if value is None:
      continue
    key = f"{family.gguf.architecture}.{gguf_key}"
    (writer.add_float32 if isinstance(value, float) else writer.add_uint32)(key, value)
  for name, param in original.state_dict().items():
    if name == "lm_head.weight" and resolved["tie_word_embeddings"]:
      continue
    base, kind = name.rsplit(".", 1)
    layer = base.split(".")[2] if base.startswith("model.layers.") else None
    template = base.replace(f".{layer}.", ".{}.", 1) if layer else base
    if template not in names:
      raise AssertionError(f"{template} has no llama.cpp name in the {family.name} map")
    writer.add_tensor(names[template].format(layer) + f".{kind}",
                      change(name, param.numpy().copy(), resolved))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_gguf_of_the_family_imports_by_metadata_and_matches_transformers(tmp_path, case):
  config, change = CASES[case]
  original = testing.random_model(config)
  path = tmp_path / f"{case}.gguf"
  _write(path, config, original, change)
  spec = pipeline.checkpoint_spec(path, log=lambda _: None)
  assert spec.family.name == _family(config).name
  # Every hyper-parameter the family reads comes back from the file (floats as float32).
  written, read = _family(config).config(config), spec.family.config(spec.variant(None).config)
  for field in dataclasses.fields(written):
    assert convert._same(getattr(written, field.name), getattr(read, field.name)), field.name  # pylint: disable=protected-access
  model, _ = convert.load_model(spec, pipeline.CHECKPOINT_VARIANT,
                                weights.Weights(path, {"kind": "local"}), 32, log=lambda _: None)
  tokens = [1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 32),
                             testing.hf_logits(original, tokens), atol=1e-4, rtol=0)


def test_every_family_llama_cpp_writes_has_a_map():
  """The families whose architectures llama.cpp converts from Hugging Face carry a GGUF map whose
  names are all llama.cpp's for that architecture (gguf-py's MODEL_TENSORS)."""
  arch_names = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
  for family in families.FAMILIES:
    assert family.gguf is not None, family.name
    arch = arch_names[family.gguf.architecture]
    allowed = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[arch]}
    for name in family.gguf.names:
      assert name.replace("{}", "{bid}") in allowed, (family.name, name)


def _llama_cpp_rope_freqs(config) -> np.ndarray:
  """What llama.cpp's LlamaModel.generate_extra_tensors writes for a llama3 rope_scaling."""
  scaling, theta, dim = config["rope_scaling"], config["rope_theta"], config["head_dim"]
  freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
  factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
  old = scaling["original_max_position_embeddings"]
  factors = []
  for freq in freqs:
    wavelen = 2 * np.pi / freq
    if wavelen < old / high:
      factors.append(1)
    elif wavelen > old / low:
      factors.append(factor)
    else:
      smooth = (old / wavelen - low) / (high - low)
      factors.append(1 / ((1 - smooth) / factor + smooth))
  return np.array(factors, dtype=np.float32)


LLAMA_3_2 = {**family_configs.TINY["llama3"],
             "rope_scaling": dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                  high_freq_factor=4.0, original_max_position_embeddings=8192)}


def _with_rope_freqs(path, config, factors):
  original = testing.random_model(config)
  _write(path, config, original, _permute)
  tensors = [(t.name, np.array(t.data)) for t in gguf.GGUFReader(path).tensors]
  fields = gguf.GGUFReader(path).fields
  writer = gguf.GGUFWriter(str(path.with_suffix(".scaled.gguf")), "llama")
  for key, field in fields.items():
    if key.startswith("llama."):
      value = field.contents()
      (writer.add_float32 if isinstance(value, float) else writer.add_uint32)(key, value)
  for name, array in tensors:
    writer.add_tensor(name, array)
  writer.add_tensor("rope_freqs.weight", factors)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return original, path.with_suffix(".scaled.gguf")


def test_a_llama_3_2_gguf_gets_its_rope_scaling_back_from_rope_freqs(tmp_path):
  """Llama 3.1+ GGUFs carry their RoPE scaling only as a rope_freqs tensor: the zoo recognizes
  the published scaling it was computed from, and converts with it."""
  original, path = _with_rope_freqs(tmp_path / "m.gguf", LLAMA_3_2,
                                    _llama_cpp_rope_freqs(LLAMA_3_2))
  spec = pipeline.checkpoint_spec(path, log=lambda _: None)
  read = spec.family.config(spec.variant(None).config)
  assert (read.rope_type, dict(read.rope_scaling)) == ("llama3", {
      "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 8192})
  model, _ = convert.load_model(spec, pipeline.CHECKPOINT_VARIANT,
                                weights.Weights(path, {"kind": "local"}), 32, log=lambda _: None)
  tokens = [1, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 32),
                             testing.hf_logits(original, tokens), atol=1e-4, rtol=0)


def test_rope_freqs_of_an_unknown_scaling_are_refused_naming_the_tensor(tmp_path):
  factors = _llama_cpp_rope_freqs(LLAMA_3_2)
  factors[-1] *= 1.5
  _, path = _with_rope_freqs(tmp_path / "m.gguf", LLAMA_3_2, factors)
  run = testing.run_tool("convert", f"--checkpoint={path}", "--output_dir=o", cwd=tmp_path)
  assert "tensor 'rope_freqs.weight' holds RoPE frequency factors of no llama3 scaling" in (
      testing.one_line_error(run, "convert"))

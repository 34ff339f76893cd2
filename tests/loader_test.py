"""Checkpoint sources and the name-mapping loader: sharded safetensors, and errors by name."""

import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from litezoo import sources
from litezoo.conversion import loader
from litezoo.plugins.tinyllama import tinyllama
from litezoo.sources import safetensors as safetensors_source
from litezoo.tests import testing

SPEC = tinyllama.SPEC
CONFIG = SPEC.variant("tiny").config
NAMES = testing.names(SPEC, CONFIG)


def _model():
  return testing.build(SPEC, CONFIG, 16)


def _state(tmp_path):
  testing.write_checkpoint(CONFIG, tmp_path)
  return safetensors.torch.load_file(tmp_path / "model.safetensors")


def test_sharded_checkpoint_loads_like_a_single_file(tmp_path):
  single, sharded = tmp_path / "single", tmp_path / "sharded"
  testing.write_checkpoint(CONFIG, single)
  testing.write_checkpoint(CONFIG, sharded, max_shard_size="20KB")
  assert (sharded / safetensors_source.SafetensorsSource.INDEX).exists()
  assert len(list(sharded.glob("*.safetensors"))) > 1
  a, b = _model(), _model()
  loader.load(a, NAMES, sources.open_checkpoint(single))
  loader.load(b, NAMES, sources.open_checkpoint(sharded))
  for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
    assert torch.equal(x, y), name


def test_missing_tensors_are_listed_with_a_count(tmp_path):
  state = _state(tmp_path)
  for name in [n for n in state if ".mlp.up_proj" in n or n == "model.norm.weight"]:
    del state[name]
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))
  assert str(e.value) == ("the checkpoint lacks 3 tensors the model needs: "
                          "model.layers.0.mlp.up_proj.weight; model.layers.1.mlp.up_proj.weight; "
                          "model.norm.weight; check the family's tensor names against the "
                          "checkpoint's")


def test_a_misspelled_tensor_name_is_listed_with_the_checkpoints_closest_names(tmp_path):
  state = _state(tmp_path)
  for layer in (0, 1):
    state[f"model.layers.{layer}.self_attn.key_proj.weight"] = state.pop(
        f"model.layers.{layer}.self_attn.k_proj.weight")
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))
  assert ("model.layers.0.self_attn.k_proj.weight (closest in the checkpoint: "
          "model.layers.0.self_attn.key_proj.weight") in str(e.value)


def test_many_missing_tensors_show_the_first_few_and_the_count(tmp_path):
  safetensors.torch.save_file({"unrelated": torch.zeros(1)}, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError, match=r"lacks 21 tensors .* \.\.\.; check the family"):
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
  state = _state(tmp_path)
  state["model.layers.1.mlp.down_proj.weight"] = torch.zeros(64, 100)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))
  assert str(e.value) == ("shape mismatch for model.layers.1.mlp.down_proj.weight: the model "
                          "expects [64, 128], the checkpoint has "
                          "model.layers.1.mlp.down_proj.weight [64, 100]; the checkpoint's "
                          "config and the model's differ")


@pytest.mark.parametrize("name, value, dtype, message", [
    ("model.norm.weight", float("nan"), torch.float32,
     "model.norm.weight holds 64 non-finite values (NaN or inf) after loading as float32"),
    # fp16's largest is 65504; a bf16 1e39 overflows float32 on the way in
    ("model.layers.0.mlp.up_proj.weight", float("inf"), torch.float16,
     "model.layers.0.mlp.up_proj.weight holds 8192 non-finite values"),
    # q/k/v are fused into one parameter: the message names all three
    ("model.layers.1.self_attn.k_proj.weight", float("nan"), torch.float32,
     "model.layers.1.self_attn.q_proj.weight + model.layers.1.self_attn.k_proj.weight + "
     "model.layers.1.self_attn.v_proj.weight holds 2048 non-finite values"),
    ("model.embed_tokens.weight", 3, torch.int32,
     "model.embed_tokens.weight holds int32 values, not floating-point weights"),
])
def test_non_finite_or_integer_weights_are_refused_by_name(tmp_path, name, value, dtype,
                                                          message):
  """A NaN or inf weight converted without complaint, then failed at run time (int8: "Failed to
  allocate tensors") or gave empty text (float); an integer tensor was cast silently."""
  state = _state(tmp_path)
  state[name] = torch.full(state[name].shape, value).to(dtype)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))
  assert str(e.value).startswith(message), str(e.value)


def test_a_tensor_the_model_would_not_use_is_refused(tmp_path):
  state = _state(tmp_path)
  state["lm_head.bias"] = torch.zeros(256)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path))
  assert str(e.value).startswith("the checkpoint holds 1 tensor the model would not use: "
                                 "lm_head.bias; converting without them")


def test_saved_rope_buffers_are_not_weights(tmp_path):
  state = _state(tmp_path)
  state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.zeros(8)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  report = loader.load(_model(), NAMES, sources.open_checkpoint(tmp_path),
                       SPEC.family.is_weight)
  assert report.ignored == ["model.layers.0.self_attn.rotary_emb.inv_freq"]


def test_missing_or_empty_checkpoint_gets_a_clear_error(tmp_path):
  with pytest.raises(sources.CheckpointError, match=r"checkpoint .*/nope does not exist"):
    sources.open_checkpoint(tmp_path / "nope")
  (tmp_path / "README.md").write_text("weights elsewhere")
  with pytest.raises(sources.CheckpointError, match=r"^no \.safetensors, \.gguf or \(with --allow_pickle\) \.bin files in "):
    sources.open_checkpoint(tmp_path)


def test_corrupt_safetensors_is_refused_with_the_file_named(tmp_path):
  (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
  with pytest.raises(sources.CheckpointError, match="model.safetensors: not a readable"):
    sources.open_checkpoint(tmp_path)


def test_every_safetensors_dtype_reads_back_as_the_library_wrote_it(tmp_path):
  tensors = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).bfloat16(),
             "f16": torch.randn(2, 2).half(), "i64": torch.arange(7), "scalar": torch.tensor(2.5),
             "empty": torch.zeros(0, 3), "f8": torch.randn(4).to(torch.float8_e4m3fn),
             "u16": torch.tensor([1, 2, 65535], dtype=torch.int32).to(torch.uint16),
             "bool": torch.tensor([True, False])}
  safetensors.torch.save_file(tensors, tmp_path / "m.safetensors")
  want = safetensors.torch.load_file(tmp_path / "m.safetensors")
  source = sources.open_checkpoint(tmp_path)
  assert sorted(source.names()) == sorted(tensors)
  for name, expected in want.items():
    got = source.load(name)
    assert (got.dtype, got.shape) == (expected.dtype, expected.shape), name
    assert torch.equal(got.reshape(-1).view(torch.uint8), expected.reshape(-1).view(torch.uint8))


_RSS_CHILD = """
import resource, sys
from litezoo import sources
source = sources.open_checkpoint(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in source.names():
  source.load(name)  # dropped at once, as the loader copies each into the model
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_reading_a_checkpoint_does_not_keep_it_resident(tmp_path):
  """Tensors are read, not memory-mapped: a mapped file's pages would stay in the resident set
  until it is closed, adding the whole checkpoint to conversion's peak (9.5 GiB for 1.1B)."""
  tensors = {f"t{i}": torch.randn(1024, 1024) for i in range(64)}  # 256 MiB, 4 MiB each
  safetensors.torch.save_file(tensors, tmp_path / "m.safetensors")
  grown = int(subprocess.run([sys.executable, "-c", _RSS_CHILD, str(tmp_path)], check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}
                             ).stdout.split()[-1])
  assert grown < 64 * 2**20, f"reading 256 MiB of tensors grew the peak RSS by {grown / 2**20:.0f} MiB"


def test_tensors_the_model_takes_as_they_are_are_read_in_place(tmp_path, monkeypatch):
  """Only the q/k/v projections, fused into one parameter, go through a temporary tensor; the
  rest are read straight into the model's parameters."""
  testing.write_checkpoint(CONFIG, tmp_path)
  source = sources.open_checkpoint(tmp_path)
  loaded = []
  original = source.load
  monkeypatch.setattr(source, "load", lambda name: loaded.append(name) or original(name))
  model = _model()
  loader.load(model, NAMES, source)
  layers = CONFIG["num_hidden_layers"]
  assert sorted(loaded) == sorted(f"model.layers.{i}.self_attn.{p}_proj.weight"
                                  for i in range(layers) for p in "qkv")
  reference = _model()
  loader.load(reference, NAMES, _Copying(source))
  for (name, x), (_, y) in zip(model.named_parameters(), reference.named_parameters()):
    assert torch.equal(x, y), name


class _Copying:
  """The same checkpoint without read_into: every tensor through a temporary."""

  def __init__(self, source):
    self.names, self.shape, self.load = source.names, source.shape, source.load


def test_an_lm_head_name_on_a_tied_model_is_refused():
  """A tied model's head is its embedding: a family that still names `lm_head` would have that
  name silently unused (a contributor's mistake the first-hour trial found)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from litezoo.plugins.smollm2 import smollm2  # pylint: disable=g-import-not-at-top
  config = smollm2.SPEC.variant("tiny").config
  assert config["tie_word_embeddings"]
  names = dataclasses.replace(testing.names(smollm2.SPEC, config), lm_head="lm_head")
  with pytest.raises(loader.LoadError, match=r"names an LM head \('lm_head'\), but the model "
                                             r"ties its LM head to the embedding"):
    loader.plan(testing.build(smollm2.SPEC, config, 16), names)

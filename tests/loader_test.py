"""Checkpoint sources and the name-mapping loader: sharded safetensors, and errors by name."""

import pytest
import safetensors.torch
import torch

from litezoo.core import checkpoint, loader
from litezoo.plugins.tinyllama import tinyllama
from litezoo.tests import testing

SPEC = tinyllama.SPEC
CONFIG = SPEC.variant("tiny").config


def _state(tmp_path):
  testing.write_checkpoint(CONFIG, tmp_path)
  return safetensors.torch.load_file(tmp_path / "model.safetensors")


def test_sharded_checkpoint_loads_like_a_single_file(tmp_path):
  single, sharded = tmp_path / "single", tmp_path / "sharded"
  testing.write_checkpoint(CONFIG, single)
  testing.write_checkpoint(CONFIG, sharded, max_shard_size="20KB")
  assert (sharded / checkpoint.SafetensorsSource.INDEX).exists()
  assert len(list(sharded.glob("*.safetensors"))) > 1
  a, b = SPEC.build(CONFIG, 16), SPEC.build(CONFIG, 16)
  loader.load(a, SPEC.tensor_names, checkpoint.open_checkpoint(single))
  loader.load(b, SPEC.tensor_names, checkpoint.open_checkpoint(sharded))
  for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
    assert torch.equal(x, y), name


def test_missing_tensors_are_listed_with_a_count(tmp_path):
  state = _state(tmp_path)
  for name in [n for n in state if ".mlp.up_proj" in n or n == "model.norm.weight"]:
    del state[name]
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(SPEC.build(CONFIG, 16), SPEC.tensor_names, checkpoint.open_checkpoint(tmp_path))
  assert str(e.value) == ("checkpoint lacks 3 tensors the model needs: "
                          "model.layers.0.mlp.up_proj.weight, model.layers.1.mlp.up_proj.weight, "
                          "model.norm.weight (3)")


def test_many_missing_tensors_show_the_first_few_and_the_count(tmp_path):
  safetensors.torch.save_file({"unrelated": torch.zeros(1)}, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError, match=r"lacks 21 tensors .*, \.\.\. \(21 in all\)$"):
    loader.load(SPEC.build(CONFIG, 16), SPEC.tensor_names, checkpoint.open_checkpoint(tmp_path))


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
  state = _state(tmp_path)
  state["model.layers.1.mlp.down_proj.weight"] = torch.zeros(64, 100)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  with pytest.raises(loader.LoadError) as e:
    loader.load(SPEC.build(CONFIG, 16), SPEC.tensor_names, checkpoint.open_checkpoint(tmp_path))
  assert str(e.value) == ("shape mismatch for model.layers.1.mlp.down_proj.weight: the model "
                          "expects [64, 128], the checkpoint has "
                          "model.layers.1.mlp.down_proj.weight [64, 100]")


def test_unused_tensors_are_a_warning(tmp_path):
  state = _state(tmp_path)
  state["model.rotary_emb.inv_freq"] = torch.zeros(8)
  safetensors.torch.save_file(state, tmp_path / "model.safetensors")
  messages = []
  report = loader.load(SPEC.build(CONFIG, 16), SPEC.tensor_names,
                       checkpoint.open_checkpoint(tmp_path), log=messages.append)
  assert report.unused == ["model.rotary_emb.inv_freq"]
  assert messages == ["warning: 1 checkpoint tensors unused: model.rotary_emb.inv_freq (1)"]


def test_missing_or_empty_checkpoint_gets_a_clear_error(tmp_path):
  with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint .*/nope does not exist"):
    checkpoint.open_checkpoint(tmp_path / "nope")
  (tmp_path / "README.md").write_text("weights elsewhere")
  with pytest.raises(checkpoint.CheckpointError, match=r"^no \.safetensors files in "):
    checkpoint.open_checkpoint(tmp_path)


def test_corrupt_safetensors_is_refused_with_the_file_named(tmp_path):
  (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
  with pytest.raises(checkpoint.CheckpointError, match="model.safetensors: not a readable"):
    checkpoint.open_checkpoint(tmp_path)

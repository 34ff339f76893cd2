"""tools/verify on every seed plugin's tiny variant, and a wrong tensor map caught with its layer."""

import dataclasses

import numpy as np
import pytest
import safetensors.torch

from litezoo import sources
from litezoo.conversion import loader
from litezoo.core import registry
from litezoo.reference import compare as verify
from litezoo.reference import hf as reference
from litezoo.tests import testing


KV_FLAG = f"--kv_cache_max_len={testing.TINY_SIGNATURES.kv_cache_max_len}"


# The .tflite side on one plugin (the conformance suite checks every plugin's conversion; the
# tiny TinyLlama's float file is the suites' shared one, //tests:tinyllama_tiny_float); the
# PyTorch side, per layer, on each seed plugin.
@pytest.mark.parametrize("model, tflite", [("tinyllama", True), ("phi2", False), ("gemma", False)])
def test_verify_passes_for_the_seed_plugins(model, tflite):
  result = testing.run_tool("verify", f"--model={model}", "--variant=tiny", "--prompts=2",
                            "--decode_steps=4", "--per_layer",
                            # Without a .tflite only the KV length applies (the rest is refused).
                            *(testing.TINY_FLAGS if tflite else ("--no_tflite", KV_FLAG)))
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[-1] == "PASS"
  rows = [l for l in lines if l.startswith("| pytorch |") or l.startswith("| tflite (none) |")]
  assert len(rows) == (4 if tflite else 2) and all(r.endswith("| 5/5 | yes |") for r in rows)
  # Past the prompts, every cache set of the file: each verify length and a decode step there.
  caches = [l for l in lines if l.startswith("| tflite (none), ")]
  assert [l.split(" | ")[:2] for l in caches] == (
      [["| tflite (none), window 16: verify 4,8, decode", "@0"],
       ["| tflite (none), window 32: verify 4,8, decode", "@16"],
       ["| tflite (none), full cache: verify 4,8, decode", "@32"]] if tflite else [])
  assert all(l.endswith("| 13/13 | yes |") for l in caches)
  assert sum(l.startswith("| tflite") for l in lines) == (5 if tflite else 0)
  assert "Traceback" not in result.stderr
  assert sum(l.startswith("| 0 |") or l.startswith("| 1 |") for l in lines) == 2  # 2 layers


def _case(tmp_path, names_change=None):
  spec = registry.Registry().get("tinyllama")
  config = spec.variant("tiny").config
  original = testing.write_checkpoint(config, tmp_path)
  names = testing.names(spec, config)
  if names_change:
    names = dataclasses.replace(names, **names_change)
  model = testing.build(spec, config, 64)
  loader.load(model, names, sources.open_checkpoint(tmp_path))
  prompts = [list(np.random.default_rng(0).integers(3, 256, 10))]
  return verify.verify(model, original, prompts, 3, 64, layers=True, log=lambda _: None)


def test_a_wrong_tensor_map_fails_at_the_first_layer(tmp_path):
  spec = registry.Registry().get("tinyllama")
  names = testing.names(spec, spec.variant("tiny").config)
  report = _case(tmp_path, {"ff_gate_proj": names.ff_up_proj, "ff_up_proj": names.ff_gate_proj})
  assert not report.ok
  assert report.first_bad_layer == 0
  assert "first layer past tolerance: layer 0" in report.table()


def test_verify_names_the_layer_whose_weights_are_wrong(tmp_path):
  """Layer 1's gate and up projections swapped in the checkpoint the zoo reads (what a map that is
  wrong for one layer does): verification fails and points at layer 1, not 0."""
  spec = registry.Registry().get("tinyllama")
  testing.write_checkpoint(spec.variant("tiny").config, tmp_path / "ckpt")
  file = tmp_path / "ckpt" / "model.safetensors"
  state = safetensors.torch.load_file(file)
  gate, up = "model.layers.1.mlp.gate_proj.weight", "model.layers.1.mlp.up_proj.weight"
  state[gate], state[up] = state[up], state[gate]
  safetensors.torch.save_file(state, tmp_path / "swapped.safetensors")
  # transformers reads the right weights from ckpt/, the zoo reads the swapped file.
  original = reference.load(tmp_path / "ckpt", spec.variant("tiny").config)
  model = testing.load(spec, spec.variant("tiny").config, tmp_path / "swapped.safetensors")
  report = verify.verify(model, original, [[5, 9, 200, 31, 7]], 2, 64, layers=True,
                         log=lambda _: None)
  assert [l.ok for l in report.layers] == [True, False]
  assert report.first_bad_layer == 1
  assert not report.ok


def test_verify_refuses_options_that_cannot_apply():
  run = testing.run_tool("verify", "--model=tinyllama", "--variant=tiny", "--no_tflite",
                         "--quantize=dynamic_int8")
  assert testing.one_line_error(run, "verify") == (
      "verify: error: --quantize picks the .tflite to check, and --no_tflite checks none: drop "
      "one of them")
  run = testing.run_tool("verify", "--model=tinyllama", "--variant=tiny", "--no_tflite",
                         "--prefill_seq_lens=8", "--kv_layout=default")
  assert testing.one_line_error(run, "verify") == (
      "verify: error: --prefill_seq_lens, --kv_layout shape the .tflite, and --no_tflite checks "
      "none: drop one of them")

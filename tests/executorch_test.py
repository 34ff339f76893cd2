"""tools/benchmark's `executorch` peer (tools/bench/executorch.py, executorch_child.py).

Without ExecuTorch (the default suite, seconds): the peer is skipped naming tools/setup_executorch.sh,
recipes map to ExecuTorch qmodes as llama.cpp's map to GGUF types, configs ExecuTorch's Llama
export cannot take are refused by name, and the HF -> ExecuTorch remap undoes transformers' q/k
permutation (checked against the permutation transformers' own Llama converter applies).

Opt-in (LITEZOO_EXECUTORCH_TESTS=1, the manual target //tests:executorch_export_test; a few
minutes): a tiny random Llama checkpoint through ExecuTorch's own export into a .pte, whose
prefill and decode logits are checked against transformers on the same checkpoint. Needs the
install tools/setup_executorch.sh made: LITEZOO_EXECUTORCH_DIR names it (under Bazel, whose tests
get a cache root of their own: `--test_env=LITEZOO_EXECUTORCH_DIR=$HOME/.cache/litezoo/executorch/
1.5.1`), else the cache root's.
"""

import json
import os
import pathlib

import numpy as np
import pytest
import torch

from litezoo.tests import testing
from litezoo.tools.bench import executorch, executorch_child, measure
from litezoo.tools.bench.target import Skipped, Target

OPT_IN = bool(os.environ.get("LITEZOO_EXECUTORCH_TESTS"))
INSTALL = (pathlib.Path(os.environ["LITEZOO_EXECUTORCH_DIR"])
           if os.environ.get("LITEZOO_EXECUTORCH_DIR") else executorch.default_dir())

TINY_LLAMA = dict(model_type="llama", vocab_size=256, hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2,
                  pad_token_id=None, rope_theta=10000.0)
PLAN = measure.Plan(threads=1, prefill_lengths=(8, 16), depths=(4,), decode_tokens=3, repeats=1,
                    ttft_prompt=8)


def _target(tmp_path, recipe="dynamic_int8", config=None, checkpoint=None) -> Target:
  return Target(spec=None, variant="tiny", recipe=recipe, config=config or TINY_LLAMA,
                checkpoint=checkpoint or tmp_path, prefill_lengths=PLAN.prefill_lengths,
                kv_cache_max_len=64, kv_layout="", zoo_signatures={}, work=tmp_path, plan=PLAN)


def test_skipped_without_the_venv_naming_the_setup_script(tmp_path):
  with pytest.raises(Skipped, match=r"run tools/setup_executorch\.sh"):
    executorch.run(_target(tmp_path), root=tmp_path / "no-executorch")
  # A half-made install (no DONE marker) is not one either.
  (tmp_path / "half" / "venv" / "bin").mkdir(parents=True)
  (tmp_path / "half" / "venv" / "bin" / "python").touch()
  with pytest.raises(Skipped, match="setup_executorch.sh"):
    executorch.venv_python(tmp_path / "half")


def test_the_default_venv_is_in_the_cache_root(tmp_path, monkeypatch):
  monkeypatch.setenv("LITEZOO_CACHE", str(tmp_path))
  assert executorch.default_dir() == tmp_path / "executorch" / executorch.VERSION
  with pytest.raises(Skipped) as e:
    executorch.venv_python()
  assert str(tmp_path) in str(e.value)


@pytest.mark.parametrize("recipe, qmode, group, embedding", [
    ("dynamic_int8", "8da8w", 0, "8,0"),
    ("int8", "8da8w", 0, "8,0"),
    ("dynamic_int8:hadamard", "8da8w", 0, "8,0"),
    ("weight_only_int8", "int8", None, "8,0"),
    ("dynamic_int4_block32:levels16", "8da4w", 32, "4,32"),
    ("dynamic_int4_block32:gptq,embedding=int8", "8da4w", 32, "4,32"),
    ("dynamic_int4_block128", "8da4w", 128, "4,128"),
    ("none", None, None, None),
])
def test_recipes_map_to_executorch_qmodes(recipe, qmode, group, embedding):
  mode = executorch.quant_mode(recipe)
  assert (mode["qmode"], mode["group_size"], mode["embedding_quantize"]) == (qmode, group, embedding)


def test_a_recipe_without_a_qmode_is_skipped_saying_so(tmp_path):
  assert executorch.quant_mode("fp16") is None
  venv = tmp_path / "et"
  (venv / "venv" / "bin").mkdir(parents=True)
  (venv / "venv" / "bin" / "python").touch()
  (venv / "DONE").write_text(executorch.VERSION)
  with pytest.raises(Skipped, match="no ExecuTorch export matches fp16"):
    executorch.run(_target(tmp_path, recipe="fp16"), root=venv)
  with pytest.raises(Skipped, match="not 'qwen2'"):
    executorch.run(_target(tmp_path, config={**TINY_LLAMA, "model_type": "qwen2"}), root=venv)


def test_params_of_a_llama_config():
  p = executorch_child.params({**TINY_LLAMA, "head_dim": 16})
  assert p == {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": 256,
               "hidden_dim": 128, "head_dim": 16, "norm_eps": 1e-6, "rope_theta": 10000.0}
  # transformers 5 nests the RoPE parameters; Llama 3's scaling is ExecuTorch's own.
  nested = {k: v for k, v in TINY_LLAMA.items() if k != "rope_theta"}
  llama3 = executorch_child.params({**nested, "rope_parameters": {
      "rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
  assert llama3["rope_theta"] == 500000.0 and llama3["use_scaled_rope"]
  assert llama3["rope_scale_factor"] == 32 and llama3["high_freq_factor"] == 4
  for bad, what in (({"attention_bias": True}, "attention_bias"),
                    ({"hidden_act": "gelu"}, "SiLU"),
                    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "RoPE scaling")):
    with pytest.raises(ValueError, match=what):
      executorch_child.params({**TINY_LLAMA, **bad})


def test_remap_undoes_transformers_qk_permutation(tmp_path):
  """transformers' convert_llama_weights_to_hf permutes Meta's interleaved q/k rows for its
  rotate-half RoPE; the remap must give Meta's rows back, and every other weight as it is."""
  model = testing.write_checkpoint({**TINY_LLAMA, "tie_word_embeddings": False}, tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  state = executorch_child.meta_state_dict(tmp_path, config)
  hf = {k: v.detach() for k, v in model.state_dict().items()}

  def hf_permute(w, heads):  # convert_llama_weights_to_hf.permute, Meta -> HF
    rows, cols = w.shape
    return w.view(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)

  for i in range(2):
    assert torch.equal(hf_permute(state[f"layers.{i}.attention.wq.weight"], 4),
                       hf[f"model.layers.{i}.self_attn.q_proj.weight"])
    assert torch.equal(hf_permute(state[f"layers.{i}.attention.wk.weight"], 2),
                       hf[f"model.layers.{i}.self_attn.k_proj.weight"])
    assert not torch.equal(state[f"layers.{i}.attention.wq.weight"],
                           hf[f"model.layers.{i}.self_attn.q_proj.weight"])
    assert torch.equal(state[f"layers.{i}.feed_forward.w2.weight"],
                       hf[f"model.layers.{i}.mlp.down_proj.weight"])
    assert torch.equal(state[f"layers.{i}.ffn_norm.weight"],
                       hf[f"model.layers.{i}.post_attention_layernorm.weight"])
  assert torch.equal(state["output.weight"], hf["lm_head.weight"])
  assert len(state) == 3 + 2 * 9


def test_a_tied_head_gets_the_table(tmp_path):
  testing.write_checkpoint({**TINY_LLAMA, "tie_word_embeddings": True}, tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  state = executorch_child.meta_state_dict(tmp_path, config)
  assert torch.equal(state["output.weight"], state["tok_embeddings.weight"])


# --- opt-in: the real export, against transformers ----------------------------------------------

PROMPT = testing.PROMPT  # 10 tokens: prefill goes in chunks of 8 (max_seq_len 9 takes 8 a call)
DECODE = [9, 33, 120]


@pytest.fixture(scope="module")
def python():
  if not OPT_IN:
    pytest.skip("opt-in: LITEZOO_EXECUTORCH_TESTS=1 (//tests:executorch_export_test) and "
                "tools/setup_executorch.sh")
  try:
    return executorch.venv_python(INSTALL)
  except Skipped as e:  # opted in: a missing install is a failure, not a skip
    pytest.fail(f"{e} (or point LITEZOO_EXECUTORCH_DIR at an install)")


@pytest.mark.parametrize("recipe, tied, atol", [
    ("none", True, 1e-4),  # fp32: the weights as they are
    ("dynamic_int8", False, None),  # the peer's int8 export (8da8w)
])
def test_pte_logits_match_transformers(python, tmp_path, recipe, tied, atol):
  model = testing.write_checkpoint({**TINY_LLAMA, "tie_word_embeddings": tied}, tmp_path / "ckpt")
  mode = executorch.quant_mode(recipe)
  pte = tmp_path / "model.pte"
  result, error, _ = executorch.run_job(python, "export", {
      "checkpoint": str(tmp_path / "ckpt"), "out": str(pte), "max_seq_len": 9,
      "max_context_len": 64, **{k: mode[k] for k in ("qmode", "group_size", "embedding_quantize")}},
      tmp_path)
  assert not error and pte.exists(), error
  result, error, _ = executorch.run_job(python, "logits", {
      "pte": str(pte), "vocab": 256, "tokens": PROMPT, "decode": DECODE}, tmp_path)
  assert not error, error
  got = np.array(result["logits"])  # [1 + len(DECODE), vocab]: the prompt's last, then each step
  with torch.no_grad():
    want = model(torch.tensor([PROMPT + DECODE])).logits[0].numpy()[len(PROMPT) - 1:]
  assert got.shape == want.shape == (1 + len(DECODE), 256)
  np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
  scale = np.abs(want).max()
  # int8 dynamic: measured 0.0065 on logits up to 0.57 (1.1%); random weights give flat logits.
  np.testing.assert_allclose(got, want, atol=atol if atol else 0.05 * scale)

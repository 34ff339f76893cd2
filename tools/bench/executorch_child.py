"""The ExecuTorch side of the `executorch` peer (tools/bench/executorch.py): export and measuring.

Runs under the python of the venv tools/setup_executorch.sh makes (executorch, torch, safetensors,
numpy; not the project's packages), with the project on PYTHONPATH for tools/bench/measure.py and
tools/console.py alone, which need numpy only:

  <venv>/bin/python -m litezoo.tools.bench.executorch_child export|measure JSON_ARGS

Like tools/bench/child.py it prints progress on stderr and one last `BENCH_RESULT {json}` line.
At module level it imports nothing ExecuTorch needs, so the peer's parent process (the project's
venv) reads `params()` from here too.
"""

import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

# HF Llama parameter names (after the leading `model.`) -> ExecuTorch's (Meta's) Llama names.
_KEYS = {
    r"embed_tokens\.weight": "tok_embeddings.weight",
    r"norm\.weight": "norm.weight",
    r"lm_head\.weight": "output.weight",
    r"layers\.(\d+)\.self_attn\.q_proj\.weight": r"layers.\1.attention.wq.weight",
    r"layers\.(\d+)\.self_attn\.k_proj\.weight": r"layers.\1.attention.wk.weight",
    r"layers\.(\d+)\.self_attn\.v_proj\.weight": r"layers.\1.attention.wv.weight",
    r"layers\.(\d+)\.self_attn\.o_proj\.weight": r"layers.\1.attention.wo.weight",
    r"layers\.(\d+)\.mlp\.gate_proj\.weight": r"layers.\1.feed_forward.w1.weight",
    r"layers\.(\d+)\.mlp\.down_proj\.weight": r"layers.\1.feed_forward.w2.weight",
    r"layers\.(\d+)\.mlp\.up_proj\.weight": r"layers.\1.feed_forward.w3.weight",
    r"layers\.(\d+)\.input_layernorm\.weight": r"layers.\1.attention_norm.weight",
    r"layers\.(\d+)\.post_attention_layernorm\.weight": r"layers.\1.ffn_norm.weight",
}


def _rope(config: dict) -> tuple[float, dict | None]:
  """(theta, scaling or None): transformers 5 nests both under `rope_parameters`."""
  nested = config.get("rope_parameters") or {}
  theta = float(config.get("rope_theta") or nested.get("rope_theta") or 10000.0)
  scaling = config.get("rope_scaling") or (
      nested if nested.get("rope_type", "default") != "default" else None)
  if scaling and scaling.get("rope_type", scaling.get("type")) == "default":
    scaling = None
  return theta, scaling


def params(config: dict) -> dict:
  """ExecuTorch's Llama ModelArgs (its params.json) for a Hugging Face Llama config.json.

  Raises ValueError naming what ExecuTorch's Llama export does not cover (another architecture,
  biases, an activation other than SiLU, a RoPE scaling other than Llama 3's)."""
  kind = config.get("model_type")
  if kind != "llama":
    raise ValueError(f"ExecuTorch's Llama export here takes Llama-architecture checkpoints, not "
                     f"{kind!r}")
  for flag in ("attention_bias", "mlp_bias"):
    if config.get(flag):
      raise ValueError(f"{flag} is not covered by the ExecuTorch Llama export used here")
  if config.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act {config['hidden_act']!r}: ExecuTorch's Llama uses SiLU")
  heads = int(config["num_attention_heads"])
  theta, scaling = _rope(config)
  out = {
      "dim": int(config["hidden_size"]),
      "n_layers": int(config["num_hidden_layers"]),
      "n_heads": heads,
      "n_kv_heads": int(config.get("num_key_value_heads") or heads),
      "vocab_size": int(config["vocab_size"]),
      "hidden_dim": int(config["intermediate_size"]),
      "head_dim": int(config.get("head_dim") or config["hidden_size"] // heads),
      "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
      "rope_theta": theta,
  }
  if scaling:
    # ExecuTorch's Llama 3 scaling fixes low_freq_factor 1 and an original context of 8192.
    kind = scaling.get("rope_type", scaling.get("type"))
    if (kind != "llama3" or float(scaling.get("low_freq_factor", 1)) != 1
        or int(scaling.get("original_max_position_embeddings", 8192)) != 8192):
      raise ValueError(f"RoPE scaling {scaling} is not the Llama 3 one ExecuTorch's export has")
    out.update(use_scaled_rope=True, rope_scale_factor=int(scaling["factor"]),
               high_freq_factor=int(scaling.get("high_freq_factor", 4)))
  return out


def _hf_to_meta_qk(w, heads: int):
  """transformers stores q/k rows permuted for its rotate-half RoPE (convert_llama_weights_to_hf's
  `permute`); ExecuTorch's Llama rotates interleaved pairs, as Meta's checkpoints are laid out.
  The inverse permutation: [heads * head_dim, dim] in and out."""
  rows, cols = w.shape
  return w.reshape(heads, 2, rows // heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def meta_state_dict(checkpoint: pathlib.Path, config: dict) -> dict:
  """The safetensors checkpoint (one file or shards) as ExecuTorch's Llama state dict: read with
  safetensors (no pickles), renamed, q/k rows re-permuted, a tied head given the table.

  Raises ValueError on a parameter it does not know (a silently dropped weight would be random)."""
  import torch  # pylint: disable=g-import-not-at-top
  from safetensors.torch import load_file  # pylint: disable=g-import-not-at-top
  files = sorted(checkpoint.glob("*.safetensors"))
  if not files:
    raise ValueError(f"no .safetensors files in {checkpoint}")
  p = params(config)
  out = {}
  for f in files:
    for name, tensor in load_file(str(f)).items():
      name = name.removeprefix("model.")
      if name.endswith("rotary_emb.inv_freq"):
        continue
      for pattern, replacement in _KEYS.items():
        if re.fullmatch(pattern, name):
          new = re.sub(pattern, replacement, name)
          break
      else:
        raise ValueError(f"{f.name}: parameter {name!r} has no ExecuTorch Llama counterpart")
      if new.endswith("attention.wq.weight"):
        tensor = _hf_to_meta_qk(tensor, p["n_heads"])
      elif new.endswith("attention.wk.weight"):
        tensor = _hf_to_meta_qk(tensor, p["n_kv_heads"])
      out[new] = tensor.to(torch.float32).contiguous()
  if "output.weight" not in out:
    if not config.get("tie_word_embeddings", True):
      raise ValueError(f"{checkpoint} has no lm_head.weight and does not tie it to the embedding")
    out["output.weight"] = out["tok_embeddings.weight"]
  return out


def export_child(args: dict) -> dict:
  """Writes args["out"] (.pte): the checkpoint through ExecuTorch's own Llama export
  (export_llama_lib.export_llama, what its export_llama CLI runs) with XNNPACK, KV cache and
  the custom SDPA op, at args["qmode"] / ["group_size"] / ["embedding_quantize"]."""
  # pylint: disable=g-import-not-at-top
  import torch
  from executorch.examples.models.llama import export_llama_lib
  from executorch.extension.llm.export.config import llm_config as et_config
  from litezoo.tools.bench import measure
  checkpoint = pathlib.Path(args["checkpoint"])
  config = json.loads((checkpoint / "config.json").read_text())
  out = pathlib.Path(args["out"])
  # ExecuTorch's loader takes a checkpoint path containing "int8" or "8da4w" for a pre-quantized
  # one: the converted .pth goes to a fresh temporary directory, whose name has neither.
  scratch = pathlib.Path(tempfile.mkdtemp(prefix="litezoo-et-"))
  try:
    measure.log(f"  executorch: HF -> ExecuTorch Llama checkpoint ({checkpoint})")
    pth = scratch / "model.pth"
    state = meta_state_dict(checkpoint, config)
    torch.save(state, pth)
    del state
    (scratch / "params.json").write_text(json.dumps(params(config)))
    cfg = et_config.LlmConfig()
    cfg.base.model_class = et_config.ModelType.llama3
    cfg.base.checkpoint = str(pth)
    cfg.base.params = str(scratch / "params.json")
    cfg.base.metadata = json.dumps({
        k: v for k, v in (("get_bos_id", config.get("bos_token_id")),
                          ("get_eos_ids", _ids(config.get("eos_token_id")))) if v is not None})
    cfg.model.dtype_override = et_config.DtypeOverride.fp32
    cfg.model.use_kv_cache = True
    cfg.model.use_sdpa_with_kv_cache = True
    cfg.model.enable_dynamic_shape = True
    cfg.export.max_seq_length = int(args["max_seq_len"])
    cfg.export.max_context_length = int(args["max_context_len"])
    cfg.export.output_name = str(scratch / "model.pte")
    cfg.backend.xnnpack.enabled = True
    cfg.backend.xnnpack.extended_ops = True
    # Set after construction: LlmConfig's qmode check lists int8 / 8da4w / 4w, while the quantizer
    # it calls (source_transformation/quantize.py) also has 8da8w, XNNPACK's dynamic int8 layout.
    cfg.quantization.qmode = args.get("qmode")
    cfg.quantization.group_size = args.get("group_size")
    cfg.quantization.embedding_quantize = args.get("embedding_quantize")
    measure.log(f"  executorch: export_llama qmode={cfg.quantization.qmode} "
                f"group_size={cfg.quantization.group_size} "
                f"embedding_quantize={cfg.quantization.embedding_quantize}")
    export_llama_lib.export_llama(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.move(str(scratch / "model.pte"), partial)
    os.replace(partial, out)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return {"pte": str(out), "size_bytes": out.stat().st_size}


def _ids(value) -> list[int] | None:
  if value is None:
    return None
  return [int(v) for v in (value if isinstance(value, list) else [value])]


class Session:
  """The .pte's `forward(tokens [1, n] int64, input_pos [1] int64) -> logits [1, vocab]` as a
  measure.Session: the KV cache lives in the method's mutable buffers and is addressed by
  input_pos, so a reset is starting again at position 0; prompts longer than one call takes
  (the exported max_seq_len - 1) go in chunks, as ExecuTorch's own runner feeds them."""

  def __init__(self, pte: str, threads: int, vocab: int):
    # pylint: disable=g-import-not-at-top
    import torch
    from executorch.extension.pybindings import portable_lib
    # After portable_lib, as ExecuTorch's own Python runner (examples/models/llama/runner/native.py)
    # does: these register the kernels of the custom SDPA / KV cache ops and the quantized ops.
    from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401
    from executorch.kernels import quantized  # noqa: F401
    self._torch = torch
    # XNNPACK and ExecuTorch's own kernels (the custom SDPA) share this pool.
    portable_lib._unsafe_reset_threadpool(threads)  # pylint: disable=protected-access
    self.module = portable_lib._load_for_executorch(pte)  # pylint: disable=protected-access
    meta = lambda name: int(self.module.run_method(name, ())[0])
    # The export's dynamic token dimension ends at max_seq_len - 1 (extension/llm/export/builder.py).
    self.max_tokens = meta("get_max_seq_len") - 1
    self.kv_cache_max_len = meta("get_max_context_len")
    self.vocab = vocab
    self.pos = 0

  def reset(self) -> None:
    self.pos = 0

  def _forward(self, tokens: list[int]):
    torch = self._torch
    out = self.module.forward((torch.tensor([tokens], dtype=torch.long),
                               torch.tensor([self.pos], dtype=torch.long)))
    self.pos += len(tokens)
    return out[0]

  def prefill(self, tokens: list[int]):
    for i in range(0, len(tokens), self.max_tokens):
      logits = self._forward(tokens[i:i + self.max_tokens])
    return logits.reshape(-1, self.vocab)[-1].numpy()

  def decode(self, token: int):
    return self._forward([token]).reshape(-1, self.vocab)[-1].numpy()


def measure_child(args: dict) -> dict:
  """The common protocol (measure.measure_session) on the .pte, in this fresh process."""
  from litezoo.tools.bench import measure  # pylint: disable=g-import-not-at-top
  plan = measure.Plan.from_json(args["plan"])
  result = measure.measure_session(lambda: Session(args["pte"], plan.threads, args["vocab"]),
                                   plan, args["vocab"], "executorch")
  import executorch.version  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  result["versions"] = {"executorch": executorch.version.__version__, "torch": torch.__version__}
  return result


def logits_child(args: dict) -> dict:
  """Tests: the logits of args["tokens"] (prefill) then of each of args["decode"] in turn,
  as lists: [1 + len(decode)][vocab]."""
  session = Session(args["pte"], args.get("threads", 1), args["vocab"])
  rows = [session.prefill(args["tokens"]).tolist()]
  for token in args.get("decode", []):
    rows.append(session.decode(token).tolist())
  return {"logits": rows}


JOBS = {"export": export_child, "measure": measure_child, "logits": logits_child}


def main(argv: list[str]) -> int:
  # ExecuTorch's export logs stay aside (child.report captures them), as the other peers' do.
  from litezoo.tools.bench import child  # pylint: disable=g-import-not-at-top
  return child.report(JOBS[argv[1]], json.loads(argv[2]))


if __name__ == "__main__":
  sys.exit(main(sys.argv))

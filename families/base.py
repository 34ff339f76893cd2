"""What every family shares: the Family record, reading a `config.json` the way transformers does,
and llama.cpp's GGUF name maps.

A family reads a Hugging Face config dict through `Reader`, which first fills in transformers' own
defaults for the model type (so a key a checkpoint leaves out means what it means to
transformers), remembers every key the family reads, and refuses a set feature the family never
read (rope scaling, sliding windows, soft-capping, mixtures of experts...): a model is built
exactly or not at all.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import re
from typing import Any, Callable, Mapping

from litezoo.core.spec import TensorNames, UnsupportedConfigError


def _set(value: Any) -> bool:
  return value not in (None, False, 0, {}, [], "")


# Sizes a config must give as whole numbers of at least 1 (Reader.required checks them).
SIZES = frozenset(("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "max_position_embeddings"))

# Sizes config.json itself must give: transformers fills in a default for its model type (a
# hidden_size of 4096), which the checkpoint's shapes then contradict far from the cause.
WRITTEN = frozenset(("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads"))

# config.json keys that change the computation when set. A family that does not read one of these
# refuses a config that sets it, naming the key, instead of building something else silently.
FEATURES: dict[str, Callable[[Any], bool]] = {
    "rope_scaling": _set,
    "rope_parameters": lambda v: isinstance(v, Mapping) and any(
        (p or {}).get("rope_type", "default") != "default"
        for p in (v.values() if all(isinstance(x, Mapping) for x in v.values()) else [v])),
    "sliding_window": _set,
    "use_sliding_window": _set,
    "attn_logit_softcapping": _set,
    "final_logit_softcapping": _set,
    "num_experts": _set,
    "num_local_experts": _set,
    "n_routed_experts": _set,
    "qk_layernorm": _set,
    "use_qk_norm": _set,
    "partial_rotary_factor": lambda v: v not in (None, 1, 1.0),
    "no_rope_layers": lambda v: _set(v) and not all(v),
    "use_bidirectional_attention": _set,
    "attention_bias": _set,
    "mlp_bias": _set,
    "logits_scaling": lambda v: v not in (None, 1, 1.0),
    "embedding_multiplier": lambda v: v not in (None, 1, 1.0),
    "residual_multiplier": lambda v: v not in (None, 1, 1.0),
    "attention_multiplier": lambda v: v is not None,
    "query_pre_attn_scalar": _set,
}


class Reader:
  """A config.json dict with transformers' defaults for its model type filled in.

  `reader(key)` returns a value and records the key as read; `reader.finish()` raises
  UnsupportedConfigError for a FEATURES key that is set but was never read.
  """

  def __init__(self, family: str, hf: Mapping[str, Any], model_types: tuple[str, ...]):
    import transformers  # pylint: disable=g-import-not-at-top
    self.family = family
    model_type = hf.get("model_type")
    if model_type not in model_types:
      raise UnsupportedConfigError(
          f"the {family} family builds model_type {', '.join(model_types)}, not {model_type!r}")
    for key in ("rope_scaling", "rope_parameters"):  # transformers' error would name the other
      if hf.get(key) is not None and not isinstance(hf[key], Mapping):
        raise UnsupportedConfigError(
            f"{key}={hf[key]!r} in the {family} config: it must be an object such as "
            '{"rope_type": "linear", "factor": 2.0}, or null for plain RoPE')
    try:
      # A deep copy: transformers rewrites nested dicts (rope_scaling) in place.
      self.values = transformers.AutoConfig.for_model(**copy.deepcopy(dict(hf))).to_dict()
    except Exception as e:  # pylint: disable=broad-except  (its validators raise many kinds)
      reason = " ".join(str(e).split())
      if len(reason) > 300:  # its first words name the field; cut at a word, not inside one
        reason = reason[:300].rsplit(" ", 1)[0] + " ..."
      raise UnsupportedConfigError(f"transformers refuses this {model_type} config: "
                                   f"{reason}") from e
    self.read: set[str] = {"model_type"}
    self.given = dict(hf)  # as written, before transformers moved keys (rope_scaling, ...)

  def __call__(self, key: str, default: Any = None) -> Any:
    self.read.add(key)
    value = self.values.get(key)
    if isinstance(value, float) and math.isnan(value):
      # NaN is never equal to itself: the checks after this one would contradict themselves.
      raise UnsupportedConfigError(f"{key}=NaN in the {self.family} config: give the number the "
                                   "model was trained with")
    return default if value is None else value

  def required(self, key: str) -> Any:
    """The value of `key`; UnsupportedConfigError when it is missing, or when it is one of the
    sizes (SIZES) and not a whole number of at least 1 (a context of 0 reached the converter's
    assertions; -1 layers was reported as unused tensors)."""
    value = self(key)
    if value is None or (key in WRITTEN and key not in self.given):
      raise UnsupportedConfigError(f"the {self.family} config has no {key!r}" + (
          f" (transformers would assume {value}, a guess that decides every shape)"
          if value is not None else ""))
    if key in SIZES and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                             and float(value).is_integer() and value >= 1):
      raise UnsupportedConfigError(f"{key}={value!r} in the {self.family} config: it must be a "
                                   "whole number of at least 1")
    return value

  def refuse(self, key: str, why: str) -> UnsupportedConfigError:
    return UnsupportedConfigError(f"{key}={self.values.get(key)!r}: {why}")

  def finish(self) -> None:
    for key, is_set in FEATURES.items():
      if key not in self.read and is_set(self.values.get(key)):
        raise UnsupportedConfigError(
            f"{key}={self.values[key]!r}: the {self.family} family does not implement this "
            f"field, and building without it would give a different model")


def rope_parameters(reader: Reader, kind: str | None = None) -> Mapping[str, Any]:
  """transformers 5's `rope_parameters` (per layer type for Gemma 3), where it moved
  `rope_theta`, `rope_scaling` and `partial_rotary_factor` of the published config.json files."""
  params = reader("rope_parameters") or {}
  reader.read.update(("rope_scaling", "rope_theta", "partial_rotary_factor"))
  if kind is not None and isinstance(params.get(kind), Mapping):
    params = params[kind]
  return params


def rope_theta(reader: Reader, default: float = 10000.0, kind: str | None = None) -> float:
  """The RoPE base; only plain (unscaled) RoPE is read here: a scaling type is refused."""
  params = rope_parameters(reader, kind)
  if params.get("rope_type", "default") != "default":
    key = "rope_scaling" if reader.given.get("rope_scaling") else "rope_parameters"
    raise UnsupportedConfigError(f"{key}={reader.given.get(key)!r}: RoPE type "
                                 f"{params['rope_type']!r} is not implemented by the "
                                 f"{reader.family} family")
  return theta_of(params, reader, default)


def theta_of(params: Mapping[str, Any], reader: Reader, default: float) -> float:
  """The RoPE base of `params` (transformers 5's rope_parameters), else the config's top-level
  rope_theta, else `default`; UnsupportedConfigError unless it is above 0."""
  return positive_theta(float(params.get("rope_theta") or reader.values.get("rope_theta")
                              or default))


def positive_theta(theta: float) -> float:
  """`theta`, or UnsupportedConfigError unless it is above 0 (RoPE's base: a negative one gives
  NaN frequencies)."""
  if not theta > 0:
    raise UnsupportedConfigError(f"rope_theta={theta}: RoPE's base must be above 0")
  return theta


def head_dim(reader: Reader) -> int:
  heads = reader.required("num_attention_heads")
  return int(reader("head_dim") or reader.required("hidden_size") // heads)


def check_heads(reader: Reader) -> tuple[int, int]:
  """(query heads, key/value heads), refused unless the KV heads divide the query heads."""
  heads = int(reader.required("num_attention_heads"))
  kv_heads = int(reader("num_key_value_heads") or heads)
  if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
    raise UnsupportedConfigError(
        f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}: "
        "grouped-query attention shares each key/value head among a whole number of query heads")
  if not reader("head_dim") and reader.required("hidden_size") % heads:
    raise UnsupportedConfigError(
        f"hidden_size={reader('hidden_size')} is not divisible by num_attention_heads={heads} "
        "and the config gives no head_dim")
  return heads, kv_heads


# transformers' activation names -> litert-torch ActivationType names.
ACTIVATIONS = {"silu": "SILU", "gelu": "GELU", "gelu_new": "GELU_TANH",
               "gelu_pytorch_tanh": "GELU_TANH"}


def activation(reader: Reader, key: str, default: str) -> str:
  name = reader(key, default)
  if name not in ACTIVATIONS:
    raise reader.refuse(key, f"activation {name!r} is not implemented; known: "
                        f"{', '.join(ACTIVATIONS)}")
  return name


@dataclasses.dataclass(frozen=True)
class GGUFMap:
  """How llama.cpp writes one architecture: GGUF tensor names -> Hugging Face names (`{}` for the
  layer index, no `.weight`), config keys read from `<architecture>.<key>` metadata, and the
  change llama.cpp made to a tensor's values (undone on load)."""

  architecture: str
  names: Mapping[str, str]
  config_keys: Mapping[str, str]  # HF config key -> GGUF metadata key after "<architecture>."
  # (HF tensor name, tensor [out, in] float32, the file's HF-named config) -> the HF tensor.
  transform: Callable[[str, Any, Mapping[str, Any]], Any] = lambda name, tensor, hf: tensor
  # (the file's HF-named config) -> what llama.cpp implies but does not write (Gemma 2's
  # query_pre_attn_scalar is its head_dim).
  implied: Callable[[Mapping[str, Any]], Mapping[str, Any]] = lambda hf: {}
  # GGUF tensors that carry hyper-parameters, not weights: name -> (its values float32 [n], the
  # config read so far) -> config keys; raises ValueError ("is ...") when it cannot tell them.
  config_tensors: Mapping[str, Callable[[Any, Mapping[str, Any]], Mapping[str, Any]]] = (
      dataclasses.field(default_factory=dict))

  def hf_name(self, gguf_name: str) -> str | None:
    base, _, kind = gguf_name.rpartition(".")
    parts = base.split(".")
    layer = None
    if len(parts) >= 2 and parts[0] == "blk" and parts[1].isdigit():
      layer, base = parts[1], ".".join(["blk", "{}", *parts[2:]])
    hf = self.names.get(base)
    if hf is None:
      return None
    return f"{hf.format(layer) if layer is not None else hf}.{kind}"


# What every llama.cpp architecture of the Llama lineage names the same way.
GGUF_COMMON_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "blk.{}.attn_norm": "model.layers.{}.input_layernorm",
    "blk.{}.attn_q": "model.layers.{}.self_attn.q_proj",
    "blk.{}.attn_k": "model.layers.{}.self_attn.k_proj",
    "blk.{}.attn_v": "model.layers.{}.self_attn.v_proj",
    "blk.{}.attn_output": "model.layers.{}.self_attn.o_proj",
    "blk.{}.ffn_gate": "model.layers.{}.mlp.gate_proj",
    "blk.{}.ffn_up": "model.layers.{}.mlp.up_proj",
    "blk.{}.ffn_down": "model.layers.{}.mlp.down_proj",
}
# Llama's: the MLP's input norm is llama.cpp's ffn_norm.
GGUF_LLAMA_NAMES = {**GGUF_COMMON_NAMES,
                    "blk.{}.ffn_norm": "model.layers.{}.post_attention_layernorm"}
GGUF_QK_NORM_NAMES = {"blk.{}.attn_q_norm": "model.layers.{}.self_attn.q_norm",
                      "blk.{}.attn_k_norm": "model.layers.{}.self_attn.k_norm"}
GGUF_COMMON_CONFIG = {
    "num_hidden_layers": "block_count",
    "hidden_size": "embedding_length",
    "intermediate_size": "feed_forward_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "max_position_embeddings": "context_length",
    "head_dim": "attention.key_length",
    "rope_theta": "rope.freq_base",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon",
}


@dataclasses.dataclass(frozen=True)
class FamilyRecord:
  """A family as plugins and the pipeline see it (implements core.spec.Family)."""

  name: str
  model_types: tuple[str, ...]
  read_config: Callable[[Mapping[str, Any]], Any]
  build_model: Callable[[Any, int], Any]
  names: Callable[[Any], TensorNames]
  gguf: GGUFMap | None = None
  litertlm_type: str = "generic_model"
  # Checkpoint tensors that are not weights (buffers some exporters save), ignored when loading.
  non_weights: str = r".*\.rotary_emb\.inv_freq$"
  # Raises UnsupportedConfigError for a KV cache length the config cannot serve (checked by the
  # tools before any work, and again by build); None where every length up to the config's
  # context is served (the tools then skip reading the config, which imports transformers).
  check_kv_cache: Callable[[Any, int], None] | None = None

  def config(self, hf: Mapping[str, Any]) -> Any:
    return self.read_config(hf)

  def build(self, config: Any, kv_cache_max_len: int) -> Any:
    return self.build_model(config, kv_cache_max_len)

  def tensor_names(self, config: Any) -> TensorNames:
    return self.names(config)

  def is_weight(self, name: str) -> bool:
    return re.fullmatch(self.non_weights, name) is None

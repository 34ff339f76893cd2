"""Loads checkpoint tensors into a re-authored model through the family's tensor-name map.

Driven by the model's own parameters: each one is mapped to the checkpoint tensor(s) it comes from,
so a parameter the map cannot fill, a tensor the checkpoint lacks (with the checkpoint's closest
unused names), a tensor the model would leave unused and a shape that does not fit are all
reported by name before anything is copied. A converted model never silently differs from its
checkpoint.
"""

import dataclasses
import difflib
import re
from typing import Callable

import torch
from torch import nn

from litezoo.sources import Source
from litezoo.core.errors import ZooError
from litezoo.core.spec import TensorNames


class LoadError(ZooError, ValueError):
  pass


def _as_is(tensor: torch.Tensor) -> torch.Tensor:
  return tensor


@dataclasses.dataclass(frozen=True)
class _Mapped:
  sources: tuple[str, ...]
  combine: Callable[..., torch.Tensor] = _as_is


# Model parameter (module path under a block, or at the top) -> TensorNames field.
_SIMPLE = {
    "tok_embedding": "embedding",
    "lm_head": "lm_head",
    "final_norm": "final_norm",
    "pre_atten_norm": "pre_attn_norm",
    "post_atten_norm": "post_attn_norm",
    "atten_func.output_projection": "attn_output_proj",
    "atten_func.query_norm": "attn_query_norm",
    "atten_func.key_norm": "attn_key_norm",
    "ff.w2": "ff_down_proj",
    "ff.w3": "ff_up_proj",
    "ff.pre_ff_norm": "pre_ff_norm",
    "ff.post_ff_norm": "post_ff_norm",
}
_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.(.+)\.(weight|bias)$")
_TOP = re.compile(r"([a-z_]+)\.(weight|bias)$")


def _fuse_qkv(attn_config, interleaved: bool):
  """q, k, v projections -> the building blocks' one qkv projection (grouped per KV head)."""

  def fuse(q, k, v):
    # Checked first: grouping by KV head zips the splits, which would silently drop extra heads.
    heads, groups, head_dim = (attn_config.num_heads, attn_config.num_query_groups,
                               attn_config.head_dim)
    wanted = (heads * head_dim, groups * head_dim, groups * head_dim)
    if (q.shape[0], k.shape[0], v.shape[0]) != wanted:
      raise LoadError(f"the checkpoint's query, key and value projections have {q.shape[0]}, "
                      f"{k.shape[0]} and {v.shape[0]} rows, but the model's attention takes "
                      f"{wanted[0]}, {wanted[1]} and {wanted[2]} ({heads} heads and {groups} KV "
                      f"heads of {head_dim}): it holds a different model")
    if not interleaved:
      return torch.cat([q, k, v], dim=0)
    qs = torch.split(q, head_dim * (heads // groups))
    ks = torch.split(k, head_dim)
    vs = torch.split(v, head_dim)
    return torch.cat([t for group in zip(qs, ks, vs) for t in group])

  return fuse


def _field(names: TensorNames, field: str, param: str) -> str:
  value = getattr(names, field)
  if value is None:
    raise LoadError(f"the tensor-name map has no {field!r}, needed for model parameter {param!r}")
  return value


def plan(model: nn.Module, names: TensorNames) -> dict[str, _Mapped]:
  """Model parameter name -> the checkpoint tensors it is made from."""
  result = {}
  params = dict(model.named_parameters())  # tied weights appear once
  for param in params:
    if m := _BLOCK.match(param):
      layer, part, kind = int(m.group(1)), m.group(2), m.group(3)
      block = model.transformer_blocks[layer]
      if part == "atten_func.qkv_projection":
        if names.attn_fused_qkv_proj:
          result[param] = _Mapped((f"{names.attn_fused_qkv_proj.format(layer)}.{kind}",))
        else:
          attn_config = block.config.attn_config
          srcs = tuple(f"{_field(names, f, param).format(layer)}.{kind}"
                       for f in ("attn_query_proj", "attn_key_proj", "attn_value_proj"))
          result[param] = _Mapped(srcs, _fuse_qkv(attn_config, attn_config.qkv_fused_interleaved))
        continue
      if part in ("ff.w1", "ff.w3") and names.ff_fused_gate_up_proj:
        # One [2 * intermediate, hidden] matrix, gate rows first (Phi-3): w1 is the gate half.
        half = 0 if part == "ff.w1" else 1
        result[param] = _Mapped((f"{names.ff_fused_gate_up_proj.format(layer)}.{kind}",),
                                lambda t, half=half: t.chunk(2, dim=0)[half])
        continue
      if part == "ff.w1":  # gated: w1 is the gate and w3 the up projection; plain: w1 is up
        field = "ff_gate_proj" if hasattr(block.ff, "w3") else "ff_up_proj"
      elif part in _SIMPLE:
        field = _SIMPLE[part]
      else:
        raise LoadError(f"model parameter {param!r} has no tensor-name rule")
      result[param] = _Mapped((f"{_field(names, field, param).format(layer)}.{kind}",))
    elif m := _TOP.match(param):
      part, kind = m.group(1), m.group(2)
      if part not in _SIMPLE:
        raise LoadError(f"model parameter {param!r} has no tensor-name rule")
      result[param] = _Mapped((f"{_field(names, _SIMPLE[part], param)}.{kind}",))
    else:
      raise LoadError(f"model parameter {param!r} has no tensor-name rule")
  if names.lm_head and not any(p.startswith("lm_head.") for p in params):
    # A tied head is the embedding (one parameter): a name for it would be silently unused.
    raise LoadError(f"the tensor-name map names an LM head ({names.lm_head!r}), but the model "
                    "ties its LM head to the embedding: give lm_head=None for tied configs "
                    "(tie_word_embeddings)")
  return result


@dataclasses.dataclass
class LoadReport:
  loaded: int  # model parameters filled
  ignored: list[str]  # checkpoint tensors that are not weights (e.g. saved RoPE buffers)


def _list(names: list[str], limit: int = 5) -> str:
  shown = ", ".join(names[:limit])
  return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check(model: nn.Module, names: TensorNames, source: Source,
          is_weight: Callable[[str], bool] = lambda _: True) -> dict[str, "_Mapped"]:
  """The load plan of `model` (which may be on the meta device: only shapes are read) from
  `source`; raises LoadError naming the tensors the model needs that the checkpoint lacks (with
  the checkpoint's closest unused names), the checkpoint tensors the model would not use
  (`is_weight` says which names are not weights at all, e.g. saved RoPE buffers), or a tensor
  taken as it is whose shape differs. Run on a meta model before the real one is allocated, a
  config whose sizes the checkpoint contradicts (a hidden_size left out, a GGUF of a vocabulary
  and no tensors) costs no memory: it was an out-of-memory kill before."""
  mapping = plan(model, names)
  available = set(source.names())
  needed = {s for m in mapping.values() for s in m.sources}
  missing = sorted(needed - available)
  unused = sorted(n for n in available - needed if is_weight(n))
  if missing:
    hints = []
    for name in missing[:5]:
      close = difflib.get_close_matches(name, unused or sorted(available - needed), n=2, cutoff=0.6)
      hints.append(f"{name}" + (f" (closest in the checkpoint: {', '.join(close)})" if close else ""))
    raise LoadError(f"the checkpoint lacks {len(missing)} tensor{'s' * (len(missing) > 1)} the "
                    "model needs: "
                    f"{'; '.join(hints)}{' ...' if len(missing) > 5 else ''}; check the family's "
                    "tensor names against the checkpoint's")
  if unused:
    tied = any(n.endswith("lm_head.weight") for n in unused)  # the config ties the head
    raise LoadError(
        f"the checkpoint holds {len(unused)} tensor{'s' * (len(unused) > 1)} the model would not "
        f"use: {_list(unused)}; "
        "converting without them would give a model that differs from the checkpoint " + (
            "(its config.json sets tie_word_embeddings, so the LM head would be the embedding "
            "table: if the checkpoint's own lm_head.weight differs, set tie_word_embeddings to "
            "false)" if tied else
            "(is it a checkpoint of another architecture, or does its config leave out a "
            "feature?)"))
  params = dict(model.named_parameters())
  for param, mapped in mapping.items():
    if mapped.combine is _as_is:  # a fused tensor's parts are checked as they load
      found = tuple(source.shape(mapped.sources[0]))
      if found != tuple(params[param].shape):
        name = mapped.sources[0]
        raise LoadError(f"shape mismatch for {name}: the model expects "
                        f"{list(params[param].shape)}, the checkpoint has {name} {list(found)}; "
                        "the checkpoint's config and the model's differ")
  return mapping


def load(model: nn.Module, names: TensorNames, source: Source,
         is_weight: Callable[[str], bool] = lambda _: True) -> LoadReport:
  """Copies every model parameter from `source`.

  Raises LoadError, before copying anything, for what `check` refuses; while copying, for a
  fused tensor whose parts do not fit, or a tensor that is not floating point or not finite.
  """
  mapping = check(model, names, source, is_weight)
  available = set(source.names())
  needed = {s for m in mapping.values() for s in m.sources}
  params = dict(model.named_parameters())
  read_into = getattr(source, "read_into", None)  # safetensors: straight into the parameter
  with torch.no_grad():
    for param, mapped in mapping.items():
      target = params[param]
      what = " + ".join(mapped.sources)
      if not (mapped.combine is _as_is and read_into is not None
              and read_into(mapped.sources[0], target)):  # else read in place, the only copy
        loaded = [source.load(s) for s in mapped.sources]
        for name, tensor in zip(mapped.sources, loaded):
          if not tensor.dtype.is_floating_point:  # a cast would pass an index table as weights
            raise LoadError(f"{name} holds {str(tensor.dtype).removeprefix('torch.')} values, "
                            "not floating-point weights: the checkpoint is not one of this model")
        tensor = mapped.combine(*loaded)
        if tuple(tensor.shape) != tuple(target.shape):
          shapes = ", ".join(f"{s} {list(source.shape(s))}" for s in mapped.sources)
          raise LoadError(f"shape mismatch for {what}: the model expects {list(target.shape)}, "
                          f"the checkpoint has {shapes}; the checkpoint's config and the model's "
                          "differ")
        target.copy_(tensor.to(target.dtype))
      # A NaN or inf weight converts without complaint and then fails at run time (int8: a
      # scale XNNPACK cannot take) or yields empty text (float): refuse it here, by name.
      bad = int(target.numel() - torch.isfinite(target).sum())
      if bad:
        raise LoadError(f"{what} holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN or "
                        "inf) after loading as float32: the checkpoint is corrupt, or its values "
                        "overflow float32")
  return LoadReport(loaded=len(mapping), ignored=sorted(available - needed))

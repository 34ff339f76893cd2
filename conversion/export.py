"""Exports a re-authored model to a multi-signature .tflite, then quantizes the file.

Two stages keep memory low (see shared/TOOLCHAIN.md): the float conversion runs with
`lightweight_conversion=True` and writes a file; the model is then freed and ai-edge-quantizer
quantizes that file. Converting and quantizing in one call peaks above 13 GB for TinyLlama 1.1B.
"""

import torch
from torch import nn

from litezoo.conversion.litert import converter, export_config, kv_cache
from litezoo.core.errors import ZooError
from litezoo.core.spec import Signatures


def export_float(model: nn.Module, signatures: Signatures, path: str) -> None:
  """Writes `model` as float32 .tflite with prefill_<n> signatures and a decode signature.

  Inputs: tokens [1, n] int32, input_pos [n] int32, kv_cache_{k,v}_<layer> in the signatures'
  layout; outputs: logits [1, n, vocab] and the updated cache. The mask comes from the model's own
  mask cache.
  """
  signatures.validate()
  config = model.config
  layout = kv_layout(signatures, config)
  # Prefill returns logits too: the runner needs the next token after a prompt.
  module = converter_module(model, export_config.ExportConfig(output_logits_on_prefill=True,
                                                              kvcache_layout=layout))
  conv = converter.Converter()
  cache = kv_cache.KVCache.from_model_config(signatures.kv_cache_max_len, config, kv_layout=layout)
  for length in sorted(signatures.prefill_seq_lens):
    conv.add_signature(f"prefill_{length}", module, sample_kwargs={
        "tokens": torch.zeros((1, length), dtype=torch.int32),
        "input_pos": torch.arange(0, length, dtype=torch.int32),
        "kv_cache": cache,
    })
  conv.add_signature("decode", module, sample_kwargs={
      "tokens": torch.zeros((1, 1), dtype=torch.int32),
      "input_pos": torch.zeros((1,), dtype=torch.int32),
      "kv_cache": cache,
  })
  try:
    edge_model = conv.convert(lightweight_conversion=True)
    edge_model.export(path)
  finally:
    _release_export_graph()


def kv_layout(signatures: Signatures, config):
  """litert-torch's layout constant for `signatures.kv_layout`."""
  if signatures.kv_layout == "default":
    return kv_cache.KV_LAYOUT_DEFAULT
  return kv_cache.KV_LAYOUT_TRANSPOSED


def _release_export_graph() -> None:
  """Drops torch.export's module-level map of the last traced graph.

  torch 2.13 keeps it (`proxy_tensor._FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT`) until the next
  export, and through the graph it keeps every weight alive: without this, freeing a 1.1B model
  after export frees nothing, and quantizing next peaks at 7.6 GiB instead of staying under 6.
  """
  from torch.fx.experimental import proxy_tensor  # pylint: disable=g-import-not-at-top
  getattr(proxy_tensor, "_FAKE_TENSOR_ID_TO_PROXY_MAP_FOR_EXPORT", {}).clear()


class _WithExportConfig(nn.Module):
  """Binds the (non-tensor) export config so torch.export only sees tensor arguments."""

  def __init__(self, model: nn.Module, config):
    super().__init__()
    self.model = model
    self.export_config = config

  def forward(self, tokens, input_pos, kv_cache):  # pylint: disable=redefined-outer-name
    return self.model(tokens, input_pos, kv_cache, export_config=self.export_config)


def converter_module(model: nn.Module, config) -> nn.Module:
  return _WithExportConfig(model, config).eval()


def quantize_file(src: str, recipe: list[dict]) -> bytes:
  """Quantizes the float .tflite at `src` with an ai-edge-quantizer recipe (quant.recipes.resolve).

  Raises QuantizeError when the recipe cannot apply (e.g. a block size not dividing a weight).
  """
  from ai_edge_quantizer import quantizer  # pylint: disable=g-import-not-at-top
  from litezoo.conversion import int4_levels  # pylint: disable=g-import-not-at-top
  int4_levels.register()
  try:
    result = quantizer.Quantizer(src, recipe).quantize()
  except ValueError as e:  # e.g. a weight dimension the block size does not divide
    raise QuantizeError(f"the recipe cannot be applied to this model: {e}") from e
  return bytes(result.quantized_model)


class QuantizeError(ZooError, ValueError):
  pass

"""Building blocks beyond litert-torch's: a decoder whose layers may differ in RoPE base and
attention window, and a block that normalizes both before and after attention and MLP.

Made of litert-torch's parts under litert-torch's names, so the loader, the KV cache and the
export see the interface of litert-torch's DecoderOnlyModel:
`forward(tokens [1, T] int32, input_pos [T] int32, kv_cache, mask=None, export_config=None)`.
"""

import dataclasses

import torch
from torch import nn


def _layers():
  """litert-torch's attention and builder modules.

  Imported only when a model is built (the Generative API takes seconds to import), and after
  litezoo.conversion.litert (the one place that imports the Generative API).
  """
  from litezoo.conversion.litert import attention, builder  # pylint: disable=g-import-not-at-top
  return attention, builder


class Block(nn.Module):
  """One layer normalized on both sides of attention and MLP (Gemma 2 and 3): x + norm(attention(norm(x))), then x + norm(mlp(norm(x))).

  The parts and names of litert-torch's TransformerBlock (which normalizes after the residual add
  instead); a sibling rather than a subclass, so that importing this family stays cheap.
  """

  def __init__(self, config, model_config):
    super().__init__()
    attention, builder = _layers()
    dim = model_config.embedding_dim
    self.config = config
    self.pre_atten_norm = builder.build_norm(dim, config.pre_attention_norm_config)
    self.atten_func = attention.CausalSelfAttention(dim, config.attn_config,
                                                    model_config.enable_hlfb)
    self.post_atten_norm = builder.build_norm(dim, config.post_attention_norm_config)
    self.ff = builder.build_ff(dim, config.ff_config)  # holds the pre- and post-MLP norms

  def forward(self, x, rope, mask, input_pos, kv_cache):
    # x: [B, T, dim]; mask: [B, 1, T, S]; kv_cache: this layer's entry, S slots long.
    attn, kv_cache = self.atten_func(self.pre_atten_norm(x), rope, mask, input_pos, kv_cache)
    x = x + self.post_atten_norm(attn)
    return x + self.ff(x), kv_cache


def _window_mask(causal: torch.Tensor, input_pos: torch.Tensor, window: int,
                 value: float) -> torch.Tensor:
  """The causal mask [B, 1, T, S] also hiding keys `window` or more positions behind the query,
  as transformers' sliding window does (a query sees itself and the window - 1 keys before it)."""
  key_pos = torch.arange(causal.shape[-1], dtype=input_pos.dtype)
  too_far = input_pos[:, None] - key_pos[None, :] >= window  # [T, S]
  return causal.masked_fill(too_far, value)


class Decoder(nn.Module):
  """A decoder with the interface of litert-torch's DecoderOnlyModel: the same attributes
  and `forward(tokens, input_pos, kv_cache, mask=None, export_config=None)`."""

  def __init__(self, config, mask_cache_size: int):
    super().__init__()
    from litezoo.conversion.litert import cfg  # pylint: disable=g-import-not-at-top
    _, builder = _layers()
    self.config = config
    self.tok_embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
    self.lm_head = nn.Linear(config.embedding_dim, config.vocab_size, bias=False)
    # One Parameter, not two sharing storage: counted, loaded and exported once.
    self.lm_head.weight = self.tok_embedding.weight
    self.transformer_blocks = nn.ModuleList(
        Block(config.block_config(i), config) for i in range(config.num_layers))
    self.final_norm = builder.build_norm(config.embedding_dim, config.final_norm_config)
    # Row p of [1, 1, size, size] hides the cache slots after position p.
    causal = torch.full((mask_cache_size, mask_cache_size), config.causal_mask_value).triu(1)
    self.register_buffer("mask_cache", causal[None, None], persistent=False)
    # Each layer's (RoPE base, sliding window or None for global attention).
    attns = [config.block_config(i).attn_config for i in range(config.num_layers)]
    self.layer_kinds = [
        (a.rotary_base,
         a.sliding_window_size if a.attn_type == cfg.AttentionType.LOCAL_SLIDING else None)
        for a in attns]

  @torch.inference_mode()
  def forward(self, tokens, input_pos, kv_cache, mask=None, export_config=None):
    # tokens: [1, T] int32; input_pos: [T] int32, the positions of the tokens in the cache.
    x = self.tok_embedding(tokens) * self.config.embedding_scale
    if mask is None:
      mask = self.mask_cache.index_select(2, input_pos)[:, :, :, :kv_cache.get_max_seq_len()]
    # Built once per RoPE base and per window (dict.fromkeys: unique, in a fixed order, so the
    # exported graph is the same every time), shared by the layers of that kind.
    head_dim = self.config.block_config(0).attn_config.head_dim
    ropes = {base: self.config.build_rope(input_pos, head_dim, base)
             for base in dict.fromkeys(base for base, _ in self.layer_kinds)}
    masks = {window: mask if window is None else
                     _window_mask(mask, input_pos, window, self.config.causal_mask_value)
             for window in dict.fromkeys(window for _, window in self.layer_kinds)}
    entries = []
    for block, entry, (base, window) in zip(self.transformer_blocks, kv_cache.caches,
                                            self.layer_kinds):
      x, entry = block(x, ropes[base], masks[window], input_pos, entry)
      entries.append(entry)
    kv_cache = dataclasses.replace(kv_cache, caches=tuple(entries))
    if (export_config is not None and not export_config.output_logits_on_prefill
        and input_pos.numel() > 1):
      return {"kv_cache": kv_cache}
    return {"logits": self.lm_head(self.final_norm(x)), "kv_cache": kv_cache}

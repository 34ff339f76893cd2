"""The flags that select a model, defined once for every tool, and the Selection they give.

A tool asks for the groups it uses (`define(recipe=True, signatures=True)`); a flag of a group it
did not ask for does not exist for it (absl refuses it by name). Every default and every check
lives here, so `--kv_cache_max_len` means the same in every tool:

  --model, --variant                            which model
  --checkpoint, --allow_pickle                  its weights (default: the variant's pinned source);
                                                without --model, the checkpoint is the model (its
                                                config.json or GGUF metadata picks the family)
  --random_weights, --weights_seed              or seeded random weights
  --quantize                                    the recipe (default: the plugin's)
  --prefill_seq_lens, --kv_cache_max_len, --kv_layout   the signatures (default: the plugin's)
  --prefill_logits, --verify_lengths            (the plugin's verify lengths and windows
  --decode_windows, --prefill_windows,          that do not fit a smaller --kv_cache_max_len are
  --verify_windows                              left out; given ones are checked)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import sys
from typing import Callable

from absl import flags

from litezoo.core.errors import ZooError
from litezoo.core.registry import default_registry
from litezoo.core.spec import KV_LAYOUTS, ModelSpec, Signatures, UnsupportedConfigError
from litezoo.quant import recipes
from litezoo.tools import common, console

FLAGS = flags.FLAGS
_RECIPE_HELP = (
    "Quantization recipe: name[:option...][,component=name[:option...]]; "
    f"names: {', '.join(recipes.RECIPES)}; options: {', '.join(recipes.OPTIONS)}; components: "
    f"{', '.join(recipes.COMPONENTS)}; e.g. dynamic_int4_block32:gptq:hadamard,embedding=int8 "
    "(quant/recipes.py).")


class FlagError(ZooError, ValueError):
  pass


@dataclasses.dataclass
class Selection:
  """A model variant with its weights, recipe and signatures, as the flags chose them."""

  spec: ModelSpec
  variant: str
  recipe: str | None
  signatures: Signatures | None
  _resolve_weights: Callable[[Callable[[str], None]], object]

  @functools.cached_property
  def weights(self):
    """The Weights (fetched, found or written on first use; then kept). First checks the
    plugin's config for these signatures (UnsupportedConfigError)."""
    return self._resolve_weights(console.log)

  @property
  def name(self) -> str:
    return f"{self.spec.name}-{self.variant}"


def int_list(values: list[str], flag: str, none_ok: bool = False) -> tuple[int, ...]:
  """A list flag's integers (plain decimal: absl keeps `--flag=` as an empty list, and int()
  would take `2_56`); FlagError naming the flag otherwise."""
  spelling = "a comma-separated list of integers" + (" or 'none'" if none_ok else "")
  if not values or not any(v.strip() for v in values):
    raise FlagError(f"--{flag} is empty: give {spelling}, or leave the flag out for the default")
  if not all(re.fullmatch(r"\s*[+-]?[0-9]+\s*", v) for v in values):
    raise FlagError(f"--{flag} must be {spelling}, got {','.join(values)!r}")
  return tuple(int(v) for v in values)


def output_dir(flag) -> pathlib.Path:
  """The directory a tool writes to (the holder of its flag naming it: --output_dir, --work_dir,
  --node_data_dir), made if needed and proven
  writable before any work; FlagError for an empty value (an unset shell variable, most likely),
  which would otherwise mean the current directory."""
  from litezoo.artifacts import files  # pylint: disable=g-import-not-at-top
  if not flag.value.strip():
    raise FlagError(f"--{flag.name} is empty: give a directory (. for the current one), or leave "
                    "the flag out")
  return files.ensure_writable_dir(common.user_path(flag.value), flag=flag.name)


def float_tflite(value: str) -> pathlib.Path:
  """The `--float` file a quantize step reads; FlagError when it is not a file."""
  path = pathlib.Path(value)
  if not path.is_file():
    raise FlagError(f"--float={value} is not a file: give a converted float .tflite")
  return path


def check_threads(value: int, flag: str = "threads") -> None:
  """--threads: at least 1 and at most the CPUs this process may run on (a thread pool larger
  than that only takes turns: 5,000 threads made a tiny model's decode 16x slower); FlagError."""
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
  if value < 1:
    raise FlagError(f"--{flag} must be at least 1, got {value}")
  if value > cpus:
    raise FlagError(f"--{flag}={value} is more than the {cpus} CPU{'s' * (cpus > 1)} this process "
                    f"may run on: give at most {cpus}")


def given(name: str) -> bool:
  """True if the user set flag `name` on the command line (not just its default)."""
  return name in FLAGS and FLAGS[name].present


class _Defined:
  """The flags one tool defined; `selection()` reads them once parsed."""

  def __init__(self, weights: bool, recipe: bool, signatures: bool, recipe_default: str | None,
               checkpoint_config: bool = False):
    self.model = flags.DEFINE_string(
        "model", None, "Registered model name (the error of a run without it lists them); "
        + ("optional with --checkpoint, whose config picks the family." if weights else ""))
    self.variant = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
    self.weights = weights
    self.checkpoint_config = checkpoint_config and not weights
    if self.checkpoint_config:  # the checkpoint names the model; the tool makes its own weights
      self.checkpoint = flags.DEFINE_string(
          "checkpoint", None, "A Hugging Face directory (its config.json is enough) or a .gguf "
          "file whose model to use without --model: its model_type picks the family; the tool "
          "runs seeded random weights of that config.")
    if weights:
      self.checkpoint = flags.DEFINE_string(
          "checkpoint", None, "Checkpoint: a Hugging Face directory (config.json + safetensors, "
          "sharded or not) or a .gguf file (default: the variant's pinned source). Without "
          "--model it is the model: its model_type (GGUF: architecture) picks the family.")
      self.allow_pickle = flags.DEFINE_bool(
          "allow_pickle", False, "Load a pickled .bin/.pt --checkpoint with "
          "torch.load(weights_only=True).")
      self.random = flags.DEFINE_bool(
          "random_weights", False, "Seeded random weights of the real size (speed and memory "
          "measurements); test-sized variants always have them.")
      self.seed = flags.DEFINE_integer("weights_seed", 0, "Seed of random weights.")
    self.recipe = (flags.DEFINE_string(
        "quantize", recipe_default,
        _RECIPE_HELP + ("" if recipe_default else " Unset: the plugin's default recipe."))
                   if recipe else None)
    self.signatures = signatures
    if signatures:
      self.prefill = flags.DEFINE_list("prefill_seq_lens", None,
                                       "Prefill lengths, e.g. 32,128 (default: the plugin's).")
      self.kv = flags.DEFINE_integer("kv_cache_max_len", None,
                                     "KV cache length in tokens (default: the plugin's).")
      self.layout = flags.DEFINE_string("kv_layout", None, "KV cache layout: "
                                        f"{' or '.join(KV_LAYOUTS)} (default: the plugin's).")
      self.prefill_logits = flags.DEFINE_string(
          "prefill_logits", None, "What prefill returns: last (the last token's logits, all "
          "generation reads) or all (every position) (default: the plugin's).")
      self.verify = flags.DEFINE_list(
          "verify_lengths", None, "verify_<k> signatures scoring k tokens at once, e.g. 8 "
          "(speculative decoding, scoring); 'none' for none (default: the plugin's).")
      self.windows = flags.DEFINE_list(
          "decode_windows", None, "decode_w<W> signatures over W-entry caches, e.g. 256,512; "
          "'none' for none (default: the plugin's).")
      self.prefill_windows = flags.DEFINE_list(
          "prefill_windows", None, "w<W>_prefill_<n> signatures prefilling into decode window W "
          "(a prompt that fits W attends over W entries, not the whole cache), e.g. 256,512; "
          "'none' for none (default: the plugin's, among the decode windows kept).")
      self.verify_windows = flags.DEFINE_list(
          "verify_windows", None, "w<W>_verify_<k> signatures verifying speculative drafts in "
          "decode window W (no copy into the full cache and back around each draft), e.g. "
          "256,512; 'none' for none (default: the plugin's, among the decode windows kept, where a "
          "verify length fits).")

  def selection(self) -> Selection:
    """The Selection of the parsed flags; raises ZooError naming a bad flag or combination."""
    times = flags.FLAGS["quantize"].present if self.recipe is not None else 0  # a count
    if times > 1:  # absl would keep the last
      raise FlagError(f"--quantize is given {times} times: this tool makes one recipe (only "
                      "evaluate takes several); give one")
    with_checkpoint = self.weights or self.checkpoint_config
    checkpoint = self.checkpoint.value if with_checkpoint else None
    if checkpoint is not None and not checkpoint.strip():  # not the current directory, silently
      raise FlagError("--checkpoint is empty: give a Hugging Face directory or a .gguf file, or "
                      "leave the flag out")
    if self.model.value is None and checkpoint is None:
      raise FlagError(("give --model=NAME or --checkpoint=DIR (a Hugging Face directory or a "
                       ".gguf file); " if with_checkpoint else "give --model=NAME; ") +
                      "registered models: " + default_registry().listing())
    found = []  # what the checkpoint was read as: said once every flag is checked
    if self.model.value is None:  # the checkpoint is the model
      if self.variant.value is not None:
        raise FlagError("--variant applies to a registered --model; a --checkpoint without "
                        "--model is its own one variant: drop --variant")
      from litezoo import pipeline  # pylint: disable=g-import-not-at-top
      spec = pipeline.checkpoint_spec(common.user_path(checkpoint), log=found.append)
    else:
      if self.checkpoint_config and checkpoint is not None:
        raise FlagError("--checkpoint names the model here: give --model or --checkpoint, "
                        "not both")
      spec = default_registry().get(self.model.value)
    variant = self.variant.value or spec.default_variant
    spec.variant(variant)  # UnknownVariantError, before the flags' own checks
    if self.weights:  # flag combinations first: no file read, no seconds of imports
      from litezoo.sources import weights as weights_lib  # pylint: disable=g-import-not-at-top
      if self.random.value and checkpoint is None and spec.variant(variant).random_weights:
        raise FlagError(f"--random_weights applies to a variant with real weights; {spec.name}-"
                        f"{variant} has random weights already: drop the flag")
      weights_lib.check(spec, variant, checkpoint, random=self.random.value,
                        seed=self.seed.value if given("weights_seed") else None,
                        allow_pickle=self.allow_pickle.value)
      if checkpoint is not None and not common.user_path(checkpoint).exists():
        from litezoo import sources  # pylint: disable=g-import-not-at-top
        raise sources.missing(common.user_path(checkpoint))  # not after seconds of imports
    signatures, notes = None, []  # notes: said after the warnings, which matter more
    if self.signatures:
      signatures = Signatures(
          int_list(self.prefill.value, "prefill_seq_lens") if self.prefill.value is not None
          else spec.signatures.prefill_seq_lens,
          self.kv.value if self.kv.value is not None else spec.signatures.kv_cache_max_len,
          _choice(self.layout.value, "kv_layout", spec.signatures.kv_layout),
          _choice(self.prefill_logits.value, "prefill_logits", spec.signatures.prefill_logits),
          _optional_ints(self.verify.value, "verify_lengths", spec.signatures.verify_lengths),
          _optional_ints(self.windows.value, "decode_windows", spec.signatures.decode_windows),
          _optional_ints(self.prefill_windows.value, "prefill_windows",
                         spec.signatures.prefill_windows),
          _optional_ints(self.verify_windows.value, "verify_windows",
                         spec.signatures.verify_windows))
      kv, asked = signatures.kv_cache_max_len, signatures
      # The plugin's own lengths that do not fit a shorter cache are left out, as for verify and
      # decode windows (a prefill chunk as long as the cache if none fits); given ones must fit.
      fitting = tuple(n for n in signatures.prefill_seq_lens if n <= kv) or (kv,)
      signatures = dataclasses.replace(
          signatures,
          prefill_seq_lens=(signatures.prefill_seq_lens if self.prefill.value is not None
                            else fitting),
          verify_lengths=signatures.verify_lengths if self.verify.value is not None else tuple(
              k for k in signatures.verify_lengths if k <= kv),
          decode_windows=signatures.decode_windows if self.windows.value is not None else tuple(
              w for w in signatures.decode_windows if w < kv))
      if self.prefill_windows.value is None:  # the plugin's, where their decode windows remain
        signatures = dataclasses.replace(signatures, prefill_windows=tuple(
            w for w in signatures.prefill_windows if w in signatures.decode_windows
            and any(n <= w for n in signatures.prefill_seq_lens)))
      if self.verify_windows.value is None:
        signatures = dataclasses.replace(signatures, verify_windows=tuple(
            w for w in signatures.verify_windows if w in signatures.decode_windows
            and any(k <= w for k in signatures.verify_lengths)))
      spec.check_signatures(variant, signatures)  # and the context, from the plugin's raw config
      left_out = ([f"prefill_{n}" for n in asked.prefill_seq_lens
                   if n not in signatures.prefill_seq_lens] +
                  [f"verify_{k}" for k in asked.verify_lengths
                   if k not in signatures.verify_lengths] +
                  [f"decode_w{w}" for w in asked.decode_windows
                   if w not in signatures.decode_windows])
      if left_out:  # said, not silent: a file without them is slower on long prompts
        built_on = (", and the window signatures built on them"
                    if asked.prefill_windows or asked.verify_windows else "")
        notes.append(f"--kv_cache_max_len={kv} leaves out the model's {', '.join(left_out)} "
                     f"(too long for that cache){built_on}")
    recipe = None
    if self.recipe is not None:
      if self.recipe.value is not None and not self.recipe.value.strip():
        raise recipes.UnknownRecipeError("--quantize is empty: give a recipe (e.g. dynamic_int8), "
                                         "or leave the flag out for the default")
      recipe = recipes.check(self.recipe.value or spec.default_recipe)
    for line in found:
      console.log(line)
    for problem in default_registry().errors:  # not only when a lookup fails: said every run
      console.log(f"warning: {problem} (its models are left out; the others work)")
    for line in notes:
      console.log(line)

    def check_config():
      # Reading the plugin's config through its family imports transformers and torch (seconds),
      # which a misspelled flag, the tool's own included, should not wait for: it runs when the
      # weights are first asked for, before any is written or read and before any conversion.
      try:
        model_config = spec.family.config(spec.variant(variant).config)
      except UnsupportedConfigError as e:
        raise UnsupportedConfigError(f"{spec.name}-{variant}'s config: {e}") from e
      if signatures is not None and spec.family.check_kv_cache is not None:
        spec.family.check_kv_cache(model_config, signatures.kv_cache_max_len)

    def resolve(log):
      from litezoo.sources import weights  # pylint: disable=g-import-not-at-top
      check_config()
      if not self.weights:
        return weights.resolve(spec, variant, log=log)
      checkpoint = self.checkpoint.value
      return weights.resolve(
          spec, variant, common.user_path(checkpoint) if checkpoint else None,
          random=self.random.value, seed=self.seed.value if given("weights_seed") else None,
          allow_pickle=self.allow_pickle.value,
          log=log)

    return Selection(spec, variant, recipe, signatures, resolve)


def define_draft_tokens():
  """--draft_tokens, for the tools that decode speculatively (generate, serve); call at import
  time."""
  defined = flags.DEFINE_integer(
      "draft_tokens", 0, "Most draft tokens per verify call with --speculative (0: k - 1 of the "
      "longest verify_<k>).")
  _key_flags_of_caller(["draft_tokens"])
  return defined


def check_speculative(speculative: str, choices: tuple[str, ...], draft_tokens: int,
                      hint: str = "") -> None:
  """--speculative (one of `choices`, "none" among them) and --draft_tokens by themselves,
  before the model is known; `hint` follows the list of choices."""
  if speculative not in choices:
    raise FlagError(f"unknown --speculative={speculative}; choose one of {', '.join(choices)}"
                    f"{hint}")
  drafters = [c for c in choices if c != "none"]
  if speculative == "none" and given("draft_tokens"):
    named = f"--speculative={drafters[0]}" if len(drafters) == 1 else "--speculative"
    raise FlagError(f"--draft_tokens applies only with {named}")
  if draft_tokens < 0:
    raise FlagError(f"--draft_tokens must be >= 0, got {draft_tokens}")


def check_draft_tokens(s: Selection, draft_tokens: int) -> None:
  """Speculative decoding's flags against the signatures the model will have: verify_<k> is
  needed, and --draft_tokens may not ask for more than k - 1 (k counts the pending token)."""
  if not s.signatures.verify_lengths:
    raise FlagError(f"--speculative needs verify_<k> signatures, and {s.name} would have none: "
                    "add --verify_lengths=8")
  most = max(s.signatures.verify_lengths) - 1
  if draft_tokens > most:
    raise FlagError(f"--draft_tokens={draft_tokens} is more than verify_{most + 1} scores after "
                    f"the pending token ({most}): use at most {most}, or a longer --verify_lengths")


def _choice(value: str | None, flag: str, default: str) -> str:
  """A string flag's value; unset gives `default`; empty (an unset shell variable, most likely)
  is a FlagError, not the default (Signatures.validate checks the value itself)."""
  if value is None:
    return default
  if not value.strip():
    raise FlagError(f"--{flag} is empty: give a value (default: {default}), or leave the flag out")
  return value


def _optional_ints(values, flag: str, default: tuple[int, ...]) -> tuple[int, ...]:
  """A list flag's integers; `none` gives (); unset gives `default`."""
  if values is None:
    return tuple(default)
  if [v.strip().lower() for v in values] == ["none"]:
    return ()
  return int_list(values, flag, none_ok=True)


def define(*, weights: bool = True, recipe: bool = True, signatures: bool = True,
           recipe_default: str | None = None, checkpoint_config: bool = False) -> _Defined:
  """Defines the model-selection flags of the groups a tool uses; call at import time.

  `checkpoint_config` (for a tool without the weights group, which makes its own weights, as the
  benchmark does): --checkpoint still selects a model by its config."""
  before = set(flags.FLAGS)
  defined = _Defined(weights, recipe, signatures, recipe_default, checkpoint_config)
  _key_flags_of_caller(sorted(set(flags.FLAGS) - before))
  return defined


def _key_flags_of_caller(names: list[str]) -> None:
  """Makes `names` key flags of the tool that called our caller, so --helpshort (which the errors
  point to) lists them; absl names the main module after sys.argv[0], as its own
  get_calling_module does."""
  caller = sys._getframe(2).f_globals.get("__name__")  # pylint: disable=protected-access
  module = sys.argv[0] if caller == "__main__" else caller
  for name in names:
    flags.FLAGS.register_key_flag_for_module(module, flags.FLAGS[name])

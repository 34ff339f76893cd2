"""Generates text with any registered model, converted on first use and run in LiteRT.

  bazel run //tools:generate -- --model=smollm2 --prompt="What is the capital of France?"
  bazel run //tools:generate -- --model=smollm2 --chat
  bazel run //tools:generate -- --model=smollm2 --speculative=prompt_lookup \
      --prompt="Repeat exactly: ..."      # drafts from the context: greedy, the same text
  bazel run //tools:generate -- --model=tinyllama --speculative=draft_model \
      --draft_model=NAME/VARIANT --prompt=...   # a smaller model with the same tokenizer drafts
"""

import dataclasses
import sys

from absl import flags

from litezoo import pipeline
from litezoo.runtime import generate, runner
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_PROMPT = flags.DEFINE_string("prompt", None, "The prompt (chat models get their chat template).")
_SYSTEM = flags.DEFINE_string("system", None, "A system message (chat models only).")
_CHAT = flags.DEFINE_bool("chat", False, "Keep a multi-turn conversation going on stdin.")
_RAW = flags.DEFINE_bool("raw", False, "Plain completion even if the model has a chat template.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 256, "Most tokens to generate per turn.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0: greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample from the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set with this probability.")
_SEED = flags.DEFINE_integer("sampling_seed", 0, "Seed of sampling.")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads for LiteRT.")
SPECULATIVE = ("none", "prompt_lookup", "draft_model")
_SPECULATIVE = flags.DEFINE_string(
    "speculative", "none",
    "Speculative decoding, drafts checked k at a time by the model's verify_<k> signature "
    "(greedy: the same text as plain greedy; sampling: the same distribution as plain "
    "sampling): prompt_lookup copies drafts from the context (faster when the reply repeats the "
    "prompt: quoting, rewriting, code edits); draft_model lets --draft_model write them.")
_DRAFT_MODEL = flags.DEFINE_string(
    "draft_model", None, "With --speculative=draft_model: NAME or NAME/VARIANT of a smaller "
    "registered model with the same tokenizer, converted with this one's recipe and signatures "
    "on first use.")
_DRAFT_TOKENS = zoo_flags.define_draft_tokens()


def _check_flags() -> generate.Sampling:
  if not _CHAT.value and _PROMPT.value is None:
    raise zoo_flags.FlagError("give --prompt=TEXT, or --chat for a conversation")
  if _PROMPT.value is not None and not _PROMPT.value.strip():
    raise zoo_flags.FlagError("--prompt is empty: give the text to answer or continue")
  if _CHAT.value and _RAW.value:
    raise zoo_flags.FlagError("--chat talks through the chat template and --raw turns it off: "
                              "drop one of them")
  if _SYSTEM.value is not None and _RAW.value:
    raise zoo_flags.FlagError("--system needs the chat template, which --raw turns off: drop one")
  if _SYSTEM.value is not None and not _SYSTEM.value.strip():
    raise zoo_flags.FlagError("--system is empty: give the instructions, or drop --system")
  sampling_flags = [f for f in ("top_k", "top_p", "sampling_seed") if zoo_flags.given(f)]
  if _TEMPERATURE.value == 0 and sampling_flags:
    raise zoo_flags.FlagError(f"--{sampling_flags[0]} applies only when sampling: set "
                              "--temperature above 0 (0 is greedy)")
  if _MAX_NEW.value <= 0:
    raise zoo_flags.FlagError(f"--max_new_tokens must be positive, got {_MAX_NEW.value}")
  zoo_flags.check_threads(_THREADS.value)
  sampling = generate.Sampling(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, _SEED.value)
  try:
    sampling.validate()
  except generate.GenerationError as e:  # the same words, naming the flag
    raise zoo_flags.FlagError(f"--{e}") from e
  zoo_flags.check_speculative(_SPECULATIVE.value, SPECULATIVE, _DRAFT_TOKENS.value)
  if (_SPECULATIVE.value == "draft_model") != (_DRAFT_MODEL.value is not None):
    raise zoo_flags.FlagError("--speculative=draft_model needs --draft_model=NAME[/VARIANT]"
                              if _DRAFT_MODEL.value is None else
                              "--draft_model applies only with --speculative=draft_model")
  return sampling


def _speculative(s: zoo_flags.Selection, tok) -> generate.PromptLookup | generate.DraftModel | None:
  """The drafter the flags ask for; a draft model is checked (same tokenizer) and converted."""
  if _SPECULATIVE.value == "none":
    return None
  if _SPECULATIVE.value == "prompt_lookup":
    return generate.PromptLookup(draft_tokens=_DRAFT_TOKENS.value)
  from litezoo.sources import weights as weights_lib  # pylint: disable=g-import-not-at-top
  label = f"--draft_model={_DRAFT_MODEL.value}"
  name, slash, variant = _DRAFT_MODEL.value.partition("/")
  if not name.strip() or "/" in variant or (slash and not variant.strip()):
    raise zoo_flags.FlagError(f"{label} is not NAME or NAME/VARIANT of a registered model (a "
                              "checkpoint cannot draft here), e.g. --draft_model=smollm2/135m")
  try:  # the errors name the draft's flag, not --model's
    spec = zoo_flags.default_registry().get(name)
    variant = variant or spec.default_variant
    spec.variant(variant)
    if (spec.name, variant) == (s.spec.name, s.variant) and not _SELECT.checkpoint.value:
      raise zoo_flags.FlagError("it is the target model itself: a draft pays off only "
                                "when it is much smaller (same tokenizer); name a smaller model, "
                                "or use --speculative=prompt_lookup")
    if spec.family.check_kv_cache is not None:  # the draft's cache is as long as the target's
      spec.family.check_kv_cache(spec.family.config(spec.variant(variant).config),
                                 s.signatures.kv_cache_max_len)
    weights = weights_lib.resolve(spec, variant, log=console.log)
  except zoo_flags.ZooError as e:
    # A pin's offline error ends by offering --checkpoint, which names the target, not the draft.
    raise zoo_flags.FlagError(f"{label}: {e}".replace(", or pass --checkpoint=DIR", "")) from e
  theirs = pipeline.tokenizer(weights, console.log).backend.get_vocab()
  ours = tok.backend.get_vocab()
  if theirs != ours:
    differ = len(set(theirs.items()) ^ set(ours.items()))
    raise zoo_flags.FlagError(
        f"{label}: its tokenizer is not {s.name}'s ({len(theirs)} against {len(ours)} tokens, "
        f"{differ} entries differ); a draft model must share the target's tokenizer")
  # The target's signatures but its verify_<k>: a draft only prefills and decodes, and each
  # signature costs conversion time and memory at load.
  signatures = dataclasses.replace(s.signatures, verify_lengths=(), verify_windows=())
  artifact = pipeline.artifact(spec, variant, weights, recipe=s.recipe, signatures=signatures,
                               log=console.log)
  return generate.DraftModel(runner.Runner(artifact.path, num_threads=_THREADS.value),
                             draft_tokens=_DRAFT_TOKENS.value)


def _turn(send, text: str) -> None:
  _, stats = send(text)
  console.out("")
  console.log(f"[{stats.line()}]")


def main(argv):
  del argv
  sampling = _check_flags()
  s = _SELECT.selection()
  if _SPECULATIVE.value != "none":  # the flags against the signatures: before the tokenizer
    zoo_flags.check_draft_tokens(s, _DRAFT_TOKENS.value)
  tok = pipeline.tokenizer(s.weights, console.log)
  use_chat = tok.chat_template is not None and not _RAW.value
  if _RAW.value and tok.chat_template is None:
    raise zoo_flags.FlagError(f"{s.name} has no chat template (a base model): its prompts are "
                              "plain completions already, so --raw cannot apply; drop it")
  if not use_chat and (_CHAT.value or _SYSTEM.value is not None):
    raise zoo_flags.FlagError(
        f"{s.name} has no chat template (a base model): --{'chat' if _CHAT.value else 'system'} "
        "cannot apply; use --prompt for plain completion")
  # Bad input is said before converting: a template that refuses the first turn, a prompt
  # longer than the KV cache.
  if use_chat:
    first = [] if _SYSTEM.value is None else [{"role": "system", "content": _SYSTEM.value}]
    prompt = tok.chat([*first, {"role": "user", "content": _PROMPT.value or "hi"}])
  else:  # without the template there is always a --prompt (_check_flags)
    prompt = tok.encode(_PROMPT.value)
  if _PROMPT.value is not None:  # a --chat started without one has nothing to check yet
    generate.check_fits(len(prompt), s.signatures.kv_cache_max_len)
  speculative = _speculative(s, tok)
  artifact = pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                               signatures=s.signatures, log=console.log)
  session = generate.Session(runner.Runner(artifact.path, num_threads=_THREADS.value),
                             tok.stop_ids)

  def send(text: str):
    stream = generate.TextStream(tok.decode, lambda t: console.out(t, end=""))
    if use_chat:
      return chat.send(text, _MAX_NEW.value, sampling, on_token=stream, speculative=speculative)
    return session.generate(session.history + tok.encode(text), _MAX_NEW.value, sampling,
                            on_token=stream, speculative=speculative)

  chat = generate.Chat(session, tok, _SYSTEM.value) if use_chat else None
  if not _CHAT.value:
    _turn(send, _PROMPT.value)
    return 0
  console.log(f"chatting with {s.name}; an empty line or Ctrl-D ends, /reset starts over")
  first = _PROMPT.value
  while True:
    if first is not None:
      line, first = first, None
    else:
      console.stderr().write("> ")  # stdout carries only the replies
      console.stderr().flush()
      line = sys.stdin.readline()
      if not line:  # Ctrl-D or the end of piped input: end the prompt's line, as a shell does
        console.stderr().write("\n")
        return 0
      if not line.strip():
        return 0
      line = line.rstrip("\n")
    if line.strip() == "/reset":
      chat.reset()
      continue
    try:
      _turn(send, line)
    except generate.ContextTooLongError as e:  # refused; the conversation stays as it was
      console.log(f"generate: {e} (/reset starts the conversation over)")
    except zoo_flags.ZooError as e:  # this turn is refused; the conversation stays as it was
      console.log(f"generate: {e}")


if __name__ == "__main__":
  common.run(main)

"""Generates text with any registered model, converted on first use and run in LiteRT.

  bazel run //tools:generate -- --model=smollm2 --prompt="What is the capital of France?"
  bazel run //tools:generate -- --model=smollm2 --chat
  bazel run //tools:generate -- --model=smollm2 --speculative=prompt_lookup \
      --prompt="Repeat exactly: ..."      # greedy, drafts from the context, same text
"""

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
SPECULATIVE = ("none", "prompt_lookup")
_SPECULATIVE = flags.DEFINE_string(
    "speculative", "none",
    "none, or prompt_lookup: greedy speculative decoding, drafts copied from the context and "
    "checked k at a time by the model's verify_<k> signature; the same text as plain greedy, "
    "faster when the reply repeats the prompt (quoting, rewriting, code edits).")
_DRAFT_TOKENS = flags.DEFINE_integer(
    "draft_tokens", 0, "Most draft tokens per verify call with --speculative (0: k - 1 of the "
    "longest verify_<k>).")


def _check_flags() -> generate.Sampling:
  if not _CHAT.value and _PROMPT.value is None:
    raise zoo_flags.FlagError("give --prompt=TEXT, or --chat for a conversation")
  if _CHAT.value and _RAW.value:
    raise zoo_flags.FlagError("--chat talks through the chat template and --raw turns it off: "
                              "drop one of them")
  if _SYSTEM.value is not None and _RAW.value:
    raise zoo_flags.FlagError("--system needs the chat template, which --raw turns off: drop one")
  sampling_flags = [f for f in ("top_k", "top_p", "sampling_seed") if zoo_flags.given(f)]
  if _TEMPERATURE.value == 0 and sampling_flags:
    raise zoo_flags.FlagError(f"--{sampling_flags[0]} applies only when sampling: set "
                              "--temperature above 0 (0 is greedy)")
  if _MAX_NEW.value <= 0:
    raise zoo_flags.FlagError(f"--max_new_tokens must be positive, got {_MAX_NEW.value}")
  if _THREADS.value <= 0:
    raise zoo_flags.FlagError(f"--threads must be at least 1, got {_THREADS.value}")
  sampling = generate.Sampling(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, _SEED.value)
  try:
    sampling.validate()
  except generate.GenerationError as e:  # the same words, naming the flag
    raise zoo_flags.FlagError(f"--{e}") from e
  sampling.validate()
  if _SPECULATIVE.value not in SPECULATIVE:
    raise zoo_flags.FlagError(f"unknown --speculative={_SPECULATIVE.value}; choose one of "
                              f"{', '.join(SPECULATIVE)}")
  if _SPECULATIVE.value == "none" and zoo_flags.given("draft_tokens"):
    raise zoo_flags.FlagError("--draft_tokens applies only with --speculative=prompt_lookup")
  if _SPECULATIVE.value != "none" and _TEMPERATURE.value != 0:
    raise zoo_flags.FlagError("--speculative is greedy only: drop --temperature or --speculative")
  if _DRAFT_TOKENS.value < 0:
    raise zoo_flags.FlagError(f"--draft_tokens must be >= 0, got {_DRAFT_TOKENS.value}")
  return sampling


def _speculative() -> generate.PromptLookup | None:
  if _SPECULATIVE.value == "none":
    return None
  return generate.PromptLookup(draft_tokens=_DRAFT_TOKENS.value)


def _turn(send, text: str) -> None:
  _, stats = send(text)
  console.out("")
  console.log(f"[{stats.line()}]")


def main(argv):
  del argv
  sampling = _check_flags()
  s = _SELECT.selection()
  tok = pipeline.tokenizer(s.weights, console.log)
  use_chat = tok.chat_template is not None and not _RAW.value
  if not use_chat and (_CHAT.value or _SYSTEM.value is not None):
    raise zoo_flags.FlagError(
        f"{s.name} has no chat template (a base model): --{'chat' if _CHAT.value else 'system'} "
        "cannot apply; use --prompt for plain completion")
  if use_chat:  # a template that refuses the first turn is bad input: say so before converting
    first = [] if _SYSTEM.value is None else [{"role": "system", "content": _SYSTEM.value}]
    tok.chat([*first, {"role": "user", "content": _PROMPT.value or "hi"}])
  speculative = _speculative()
  if speculative is not None and not s.signatures.verify_lengths:
    raise zoo_flags.FlagError(f"--speculative needs verify_<k> signatures, and {s.name} would "
                              "have none: add --verify_lengths=8")
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
      if not line or not line.strip():
        return 0
      line = line.rstrip("\n")
    if line.strip() == "/reset":
      chat.reset()
      continue
    try:
      _turn(send, line)
    except zoo_flags.ZooError as e:  # this turn is refused; the conversation stays as it was
      console.log(f"generate: {e}")


if __name__ == "__main__":
  common.run(main)

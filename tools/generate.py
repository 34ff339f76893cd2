"""Generates text with any registered model, converted on first use and run in LiteRT.

  bazel run //tools:generate -- --model=smollm2 --prompt="What is the capital of France?"
  bazel run //tools:generate -- --model=smollm2 --chat
"""

import contextlib
import sys

from absl import flags

from litezoo.core import cache, convert as convert_lib, generate, runner, tokenizer
from litezoo.core.checkpoint import cache_dir
from litezoo.core.registry import default_registry
from litezoo.tools import common

_MODEL = flags.DEFINE_string("model", None, "Registered model name.", required=True)
_VARIANT = flags.DEFINE_string("variant", None, "Model variant (default: the plugin's).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint (default: the variant's source).")
_QUANTIZE = flags.DEFINE_string("quantize", None, "Recipe (default: the plugin's).")
_PROMPT = flags.DEFINE_string("prompt", None, "The prompt (chat models get their chat template).")
_SYSTEM = flags.DEFINE_string("system", None, "A system message for chat models.")
_CHAT = flags.DEFINE_bool("chat", False, "Keep a multi-turn conversation going on stdin.")
_RAW = flags.DEFINE_bool("raw", False, "Plain completion even if the model has a chat template.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 256, "Most tokens to generate per turn.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0: greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample from the k most likely tokens (0: all).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sample from the smallest set with this probability.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads for the LiteRT interpreter.")
_PREFILL = flags.DEFINE_list("prefill_seq_lens", None, "Prefill lengths (default: the plugin's).")
_KV = flags.DEFINE_integer("kv_cache_max_len", None, "KV cache length (default: the plugin's).")


def _say(text: str) -> None:
  sys.stdout.write(text)
  sys.stdout.flush()


def main(argv):
  del argv
  spec = default_registry().get(_MODEL.value)
  variant = _VARIANT.value or spec.default_variant
  if not _CHAT.value and _PROMPT.value is None:
    raise common.ZooError("give --prompt=TEXT, or --chat for a conversation")
  sampling = generate.Sampling(_TEMPERATURE.value, _TOP_K.value, _TOP_P.value, _SEED.value)
  sampling.validate()
  if _MAX_NEW.value <= 0:
    raise common.ZooError(f"--max_new_tokens must be positive, got {_MAX_NEW.value}")
  signatures = common.signatures(spec, _PREFILL.value, _KV.value)
  # Resolved once: a pinned source is fetched and its sha256 checked here, not again below.
  weights = convert_lib.checkpoint_path(
      spec, variant, common.user_path(_CHECKPOINT.value) if _CHECKPOINT.value else None)
  with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the generated text
    path = cache.artifact(spec, variant, recipe=_QUANTIZE.value, signatures=signatures,
                          checkpoint=weights, log=lambda m: print(m, file=sys.stderr))
  tok = (tokenizer.ByteTokenizer() if weights is None else
         tokenizer.load(weights, cache=cache_dir() / "tokenizers" / path.parent.name))
  session = generate.Session(runner.Runner(path, num_threads=_THREADS.value), tok.stop_ids)
  use_chat = tok.chat_template is not None and not _RAW.value
  if _CHAT.value and not use_chat:
    raise common.ZooError(f"{spec.name}-{variant} has no chat template (a base model): use "
                          "--prompt for plain completion")
  messages = [{"role": "system", "content": _SYSTEM.value}] if _SYSTEM.value else []

  def turn(user_text: str) -> None:
    if use_chat:
      messages.append({"role": "user", "content": user_text})
      context = tok.chat(messages)
    else:
      context = session.history + tok.encode(user_text)
    stream = generate.TextStream(tok.decode, _say)
    out, stats = session.generate(context, _MAX_NEW.value, sampling, on_token=stream)
    _say("\n")
    if use_chat:
      messages.append({"role": "assistant", "content": tok.decode(out)})
    print(f"[{stats.line()}]", file=sys.stderr)

  if not _CHAT.value:
    turn(_PROMPT.value)
    return 0
  print(f"chatting with {spec.name}-{variant}; an empty line or Ctrl-D ends, /reset starts over",
        file=sys.stderr)
  first = _PROMPT.value
  while True:
    if first is not None:
      line, first = first, None
    else:
      _say("> ")
      line = sys.stdin.readline()
      if not line or not line.strip():
        return 0
      line = line.rstrip("\n")
    if line.strip() == "/reset":
      session.reset()
      del messages[1 if _SYSTEM.value else 0:]
      continue
    try:
      turn(line)
    except generate.GenerationError as e:
      print(f"generate: {e}", file=sys.stderr)


if __name__ == "__main__":
  common.run(main)

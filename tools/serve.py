"""Serves any registered model over an OpenAI-compatible HTTP API (chat, completions, streaming,
JSON schema), converted on first use and run in LiteRT.

  bazel run //tools:serve -- --model=smollm2                 # http://127.0.0.1:8000/v1
  bazel run //tools:serve -- --model=smollm2 --port=9000 --api_key=secret

Then, from Python: `openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-")`. SIGTERM or
Ctrl-C stops taking requests, finishes the ones under way and queued, and exits.
"""

import errno
import ipaddress
import math
import signal
import socket
import sys
import threading
import traceback

from absl import flags

from litezoo import pipeline
from litezoo.core.errors import ZooError
from litezoo.runtime import generate, runner
from litezoo.tools import common, console
from litezoo.tools import flags as zoo_flags

_SELECT = zoo_flags.define()
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (loopback by default; "
                            "0.0.0.0 exposes the server to the network).")
_PORT = flags.DEFINE_integer("port", 8000, "TCP port (0: any free port, printed at start).")
_API_KEY = flags.DEFINE_string("api_key", None, "If set, requests need 'Authorization: Bearer "
                               "KEY' (as the openai client sends its api_key).")
_MAX_QUEUE = flags.DEFINE_integer("max_queue", 16, "Requests that may wait for the model; more "
                                  "are answered 429 with Retry-After.")
_SLOTS = flags.DEFINE_integer("slots", 4, "KV caches kept (conversations whose next turn "
                              "prefills only what is new), and requests run at once, taking "
                              "turns on the model; each holds kv_cache_max_len tokens.")
_PREFIX_REUSE = flags.DEFINE_bool("prefix_reuse", True, "Keep the KV cache between requests so "
                                   "a prompt extending an earlier one prefills only what is new "
                                   "(--noprefix_reuse: prefill every prompt whole, to measure it).")
_THREADS = flags.DEFINE_integer("threads", 2, "CPU threads for LiteRT.")
_MAX_BODY = flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest request body (413 past it).")
_SPECULATIVE = flags.DEFINE_string(
    "speculative", "none",
    "prompt_lookup: speculative decoding with drafts copied from the conversation, checked k at "
    "a time by the model's verify_<k> signature: greedy replies are the same text, sampled ones "
    "the same distribution, faster when a reply quotes its prompt (requests with a "
    "response_format decode plainly).")
_DRAFT_TOKENS = zoo_flags.define_draft_tokens()
_DRAIN = flags.DEFINE_float("drain_seconds", 60.0, "On SIGTERM, how long requests under way may "
                            "take to finish.")


def _check_flags() -> None:
  if not 0 <= _PORT.value <= 65535:
    raise zoo_flags.FlagError(f"--port must be in 0..65535, got {_PORT.value}")
  zoo_flags.check_threads(_THREADS.value)
  for name, flag, low in (("max_queue", _MAX_QUEUE, 0), ("slots", _SLOTS, 1),
                          ("max_body_bytes", _MAX_BODY, 1024)):
    if flag.value < low:
      raise zoo_flags.FlagError(f"--{name} must be at least {low}, got {flag.value}")
  if not (math.isfinite(_DRAIN.value) and _DRAIN.value >= 0):
    raise zoo_flags.FlagError(f"--drain_seconds must be a finite number >= 0, got {_DRAIN.value}")
  zoo_flags.check_speculative(_SPECULATIVE.value, ("none", "prompt_lookup"), _DRAFT_TOKENS.value,
                              " (drafts from a model: tools/generate only)")
  if _API_KEY.value is not None and not _API_KEY.value.strip():
    raise zoo_flags.FlagError("--api_key must not be empty")
  if not _HOST.value.strip():
    raise zoo_flags.FlagError("--host is empty: give an address (127.0.0.1, the default; 0.0.0.0 "
                              "for every interface)")


def _bind(host: str, port: int) -> socket.socket:
  """A socket bound to the address, not yet listening (a client is refused, not left waiting,
  while the model loads); a FlagError naming the address when it cannot be had."""
  try:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
  except socket.gaierror as e:
    raise zoo_flags.FlagError(f"--host={host} is not an address of this machine ({e.strerror})")
  family, _, _, _, address = infos[0]
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind(address)
  except OSError as e:
    sock.close()
    if e.errno == errno.EADDRNOTAVAIL:
      raise zoo_flags.FlagError(f"--host={host} is not an address of this machine: use "
                                "127.0.0.1 (the default), an address of one of its network "
                                "interfaces, or 0.0.0.0 for all of them") from e
    if e.errno == errno.EACCES and 0 < port < 1024:
      raise zoo_flags.FlagError(f"cannot listen on port {port}: ports below 1024 need root; "
                                "choose --port=1024 or above (8000 is the default)") from e
    raise zoo_flags.FlagError(f"cannot listen on {host}:{port}: {e.strerror}; choose another "
                              "--port (or --port=0 for any free one)") from e
  return sock


def _convert_in_a_child(s: zoo_flags.Selection) -> None:
  """Converts (and caches) the selected model in a forked child, so the server never loads the
  converter (torch.export, TensorFlow): converting in this process left SmolLM2 135M's server
  at 1.7 GiB resident, against 0.9 GiB this way, as when started from the cache. Forked before
  anything starts a thread; raises the child's ZooError as its own, KeyboardInterrupt when it
  was interrupted."""
  import multiprocessing  # pylint: disable=g-import-not-at-top
  context = multiprocessing.get_context("fork")
  errors = context.SimpleQueue()

  def convert():
    try:
      pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe, signatures=s.signatures,
                        log=console.log)
    except ZooError as e:
      errors.put(str(e))
      sys.exit(2)
    except KeyboardInterrupt:
      from litezoo.artifacts import files  # pylint: disable=g-import-not-at-top
      files.remove_empty_created_dirs()  # the parent's say "nothing partial" covers these too
      sys.exit(130)
    except Exception:  # pylint: disable=broad-except  (a bug: its traceback goes to the parent)
      errors.put(None)
      console.log(traceback.format_exc().rstrip())
      sys.exit(1)

  child = context.Process(target=convert, name="litezoo-convert")
  child.start()
  try:
    child.join()
  except BaseException:  # Ctrl-C or SIGTERM here: the child stops too, removing its temp files
    child.terminate()
    child.join()
    raise
  if child.exitcode == 0:
    return
  if child.exitcode in (130, -signal.SIGINT):
    raise KeyboardInterrupt()
  message = None if errors.empty() else errors.get()
  if message is not None:
    raise ZooError(message)
  raise RuntimeError(f"the conversion failed (its process ended with {child.exitcode}); "
                     "see the lines above")


def main(argv):
  del argv
  _check_flags()
  sock = _bind(_HOST.value, _PORT.value)  # before converting: a taken port fails at once
  s = _SELECT.selection()
  speculative = None
  if _SPECULATIVE.value == "prompt_lookup":
    zoo_flags.check_draft_tokens(s, _DRAFT_TOKENS.value)
    speculative = generate.PromptLookup(draft_tokens=_DRAFT_TOKENS.value)
  if pipeline.cached_artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                              signatures=s.signatures) is None:
    _convert_in_a_child(s)
  tok = pipeline.tokenizer(s.weights, console.log)
  artifact = pipeline.artifact(s.spec, s.variant, s.weights, recipe=s.recipe,
                               signatures=s.signatures, log=console.log)

  # pylint: disable=g-import-not-at-top
  import uvicorn
  from litezoo.tools.server import app as server_app
  from litezoo.tools.server import engine as server_engine
  from litezoo.tools.server import grammar

  grammars = grammar.Grammars(tok.backend, tok.stop_ids,
                              s.spec.variant(s.variant).config["vocab_size"])
  grammars.prepare()  # reads the tokenizer: before the worker thread shares it
  tok_lock = threading.Lock()
  # transformers' fast tokenizer is not safe to share between threads ("Already borrowed"), so
  # requests are tokenized under a lock; the replies' text comes from a second copy with a lock
  # of its own, so rendering a huge request does not hold up the tokens of the running replies.
  replies_tok, replies_lock = pipeline.tokenizer(s.weights), threading.Lock()

  def decode(ids: list[int]) -> str:
    with replies_lock:
      return replies_tok.decode(ids)

  # One loaded model; each slot has its own KV cache on it (one thread pool: pools of their own
  # would spin on the CPUs while another slot's turn runs).
  model = runner.Runner(artifact.path, num_threads=_THREADS.value)
  caches = iter([model] + [model.share() for _ in range(_SLOTS.value - 1)])
  engine = server_engine.Engine(
      lambda: generate.Session(next(caches), tok.stop_ids),
      decode, slots=_SLOTS.value, max_queue=_MAX_QUEUE.value, grammars=grammars,
      log=console.log, prefix_reuse=_PREFIX_REUSE.value, speculative=speculative)
  loopback = ipaddress.ip_address(sock.getsockname()[0].split("%")[0]).is_loopback
  served = server_app.Served(
      engine=engine, model_id=s.name, aliases=(s.spec.name,), tokenizer=tok,
      tokenizer_lock=tok_lock, grammars=grammars, api_key=_API_KEY.value,
      allowed_hosts=server_app.LOOPBACK_HOSTS if loopback else None,
      max_body_bytes=_MAX_BODY.value, drain_seconds=_DRAIN.value, log=console.log)
  config = uvicorn.Config(server_app.create_app(served), log_level="warning", access_log=False,
                          timeout_graceful_shutdown=int(_DRAIN.value) + 5,
                          timeout_keep_alive=30)
  try:
    sock.listen(128)
  except OSError as e:  # another server took the port while this one converted
    raise zoo_flags.FlagError(f"cannot listen on {_HOST.value}:{_PORT.value}: {e.strerror}; "
                              "choose another --port (or --port=0 for any free one)") from e
  host, port = sock.getsockname()[:2]
  shown = f"[{host}]" if ":" in host else host
  console.log(f"serving {s.name} ({artifact.path.name}) at http://{shown}:{port}/v1; "
              "Ctrl-C or SIGTERM stops")
  if not loopback and _API_KEY.value is None:
    console.log(f"warning: listening on {host}, beyond this machine, without --api_key: anyone "
                "who can reach the port can use the model")
  # uvicorn drains on SIGTERM or Ctrl-C, then raises the signal again for the handler it found:
  # this one, so the tool goes on to stop the engine and exits 0 either way.
  signal.signal(signal.SIGTERM, lambda *_: None)
  signal.signal(signal.SIGINT, lambda *_: None)
  try:
    uvicorn.Server(config).run(sockets=[sock])
  finally:
    engine.stop()
  status = engine.status()
  plural = lambda n: "" if n == 1 else "s"
  others = [f"{status[k]} {what}" for k, what in (
      ("cancelled", "cancelled by the client"), ("rejected", "turned away by a full queue"),
      ("errors", "failed")) if status[k]]
  console.log(f"serve: stopped ({status['served']} request{plural(status['served'])} served"
              + "".join(f", {o}" for o in others) + ")")
  return 0


if __name__ == "__main__":
  common.run(main)

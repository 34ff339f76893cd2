"""What the server suites share: a tiny chat checkpoint and the server run as a user runs it."""

import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx

from litezoo.core import registry
from litezoo.sources import random_weights
from litezoo.tests import testing

# Float, two prefill lengths and decode only (the server uses no verify_<k>; the runner's decode
# windows are runner_test's): half the conversion of the plugin's signatures. A KV cache long
# enough that a 1000-token answer takes a second or two (time for a client to leave mid-stream).
SIGNATURES = ("--prefill_seq_lens=8,16", "--kv_cache_max_len=1024", "--verify_lengths=none",
              "--decode_windows=none", "--quantize=none")
# A chat template in plain text: the tiny tokenizer has no special tokens.
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def write_chat_checkpoint(directory):
  """A tiny chat model in `directory`: random weights written by transformers and a tokenizer
  with a chat template (generate_test and serve_test share it)."""
  config = registry.Registry().get("smollm2").variant("tiny").config
  testing.write_checkpoint(config, directory)
  random_weights.write_tokenizer(directory, config["vocab_size"])
  settings = json.loads((directory / "tokenizer_config.json").read_text())
  (directory / "tokenizer_config.json").write_text(json.dumps({**settings,
                                                               "chat_template": CHAT_TEMPLATE}))
  return directory


def chat_args(checkpoint, signatures=SIGNATURES):
  return ("--model=smollm2", "--variant=tiny", f"--checkpoint={checkpoint}", *signatures)


class Server:
  """`python -m litezoo.tools.serve` on a free loopback port (--port=0, read back from its
  "serving ... at URL" line); `stop()` sends SIGTERM and returns the exit code."""

  def __init__(self, *args: str, timeout: float = 900):
    env = {**os.environ, "PYTHONPATH": str(testing.RUNFILES_ROOT)}
    self.proc = subprocess.Popen([sys.executable, "-m", "litezoo.tools.serve", "--port=0", *args],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    self.lines: list[str] = []
    found = threading.Event()

    def read():
      for line in self.proc.stderr:
        self.lines.append(line)
        if line.startswith("serving "):
          found.set()
      found.set()

    threading.Thread(target=read, daemon=True).start()
    found.wait(timeout)
    match = next((re.search(r"at (http://\S+)/v1;", line) for line in self.lines
                  if line.startswith("serving ")), None)
    if match is None:
      self.proc.kill()
      raise AssertionError("the server did not start:\n" + "".join(self.lines)[-3000:])
    self.url = match.group(1)
    self.v1 = self.url + "/v1"

  def log(self) -> str:
    return "".join(self.lines)

  def health(self) -> dict:
    return httpx.get(self.url + "/health").json()

  def stop(self) -> int:
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
    return self.proc.wait(120)

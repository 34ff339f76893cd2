"""Serving side by side (`bazel run //tools:benchmark -- --model=smollm2 --serving`): the zoo's
OpenAI-compatible server (tools/serve.py) against llama.cpp's `llama-server` on the model's GGUF
and LiteRT-LM's `litert-lm serve` on the zoo's `.litertlm` bundle, one after the other on the same
machine and threads, each driven through its OpenAI API with streaming on loopback.

Per server: chats of `turns` turns (each turn's messages carry the server's own earlier replies,
as a chat client sends them), greedy, `max_tokens` per reply; at concurrency 1 (one chat) and 4
(four chats at once). Reported: time to first token (TTFT) of the first turn and of the follow-up
turns (where prefix reuse shows), decode tokens/s per stream (after the first token) and the
aggregate tokens/s. The zoo's server also runs with --noprefix_reuse, for what reuse saves.

Peers that cannot run (llama.cpp not built: tools/setup_llamacpp.sh; the litert-lm CLI not
installed: tools/setup_litertlm_cli.sh) are recorded as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from litezoo.artifacts import files
from litezoo.tools.bench import measure

SCHEMA = "litezoo-serving-bench-1"
PEERS = ("zoo", "zoo_no_reuse", "llamacpp", "litertlm")
TURNS = ("Hi! Who are you?", "What can you help me with?", "Name three fruits.",
         "Which of them is the sweetest?", "Thank you. Summarize our chat in one sentence.")
OPENERS = ("Hi! Who are you?", "Hello, what is your name?", "Good morning! Who am I talking to?",
           "Hey there, introduce yourself.")
LLAMACPP_VERSION = "0.3.36"  # tools/setup_llamacpp.sh
LITERTLM_CLI_VERSION = "0.18.1"  # tools/setup_litertlm_cli.sh


class Skipped(Exception):
  pass


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _Process:
  """A server process on loopback, its output in a log file; stopped with SIGTERM."""

  def __init__(self, cmd: list[str], log: pathlib.Path, env: dict | None = None):
    self.log_path = log
    self._log = open(log, "w")  # pylint: disable=consider-using-with
    self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                 env={**os.environ, **(env or {})})

  def wait_ready(self, url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
      if self.proc.poll() is not None:
        raise Skipped(f"the server exited with {self.proc.returncode}: "
                      f"{self.log_path.read_text()[-600:]}")
      try:
        if httpx.get(url, timeout=2).status_code == 200:
          return
      except httpx.HTTPError:
        pass
      time.sleep(0.5)
    raise Skipped(f"the server did not answer {url} within {timeout:.0f} s")

  def stop(self) -> None:
    if self.proc.poll() is None:
      self.proc.terminate()
      try:
        self.proc.wait(60)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    self._log.close()


async def _turn(client: httpx.AsyncClient, model: str, messages: list[dict],
                max_tokens: int) -> dict:
  """One streamed reply: TTFT, tokens, decode rate, and the text."""
  body = {"model": model, "messages": messages, "max_tokens": max_tokens,
          "max_completion_tokens": max_tokens, "temperature": 0, "stream": True,
          "stream_options": {"include_usage": True}}
  start = time.perf_counter()
  first = last = None
  pieces, usage = [], None
  async with client.stream("POST", "/v1/chat/completions", json=body) as r:
    if r.status_code != 200:
      await r.aread()
      raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
    async for line in r.aiter_lines():
      if not line.startswith("data:"):
        continue
      payload = line[5:].strip()
      if payload == "[DONE]":
        break
      event = json.loads(payload)
      if event.get("usage"):
        usage = event["usage"]
      for choice in event.get("choices") or []:
        piece = (choice.get("delta") or {}).get("content")
        if piece:
          now = time.perf_counter()
          first = first if first is not None else now
          last = now
          pieces.append(piece)
  text = "".join(pieces)
  tokens = (usage or {}).get("completion_tokens") or len(pieces)
  decode = (tokens - 1) / (last - first) if first is not None and last > first else 0.0
  cached = ((usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
  return {"ttft_s": (first or time.perf_counter()) - start, "tokens": tokens,
          "decode_tps": decode, "seconds": time.perf_counter() - start,
          "prompt_tokens": (usage or {}).get("prompt_tokens"), "cached_tokens": cached,
          "text": text}


async def _chat(client, model: str, opener: str, turns: int, max_tokens: int) -> list[dict]:
  messages, out = [], []
  for i in range(turns):
    messages.append({"role": "user", "content": opener if i == 0 else TURNS[i % len(TURNS)]})
    record = await _turn(client, model, messages, max_tokens)
    messages.append({"role": "assistant", "content": record["text"]})
    out.append(record)
  return out


async def _scenario(url: str, model: str, concurrency: int, turns: int, max_tokens: int) -> dict:
  async with httpx.AsyncClient(base_url=url, timeout=600) as client:
    await _turn(client, model, [{"role": "user", "content": "Warm up."}], 8)
    start = time.perf_counter()
    chats = await asyncio.gather(*(_chat(client, model, OPENERS[i % len(OPENERS)], turns,
                                         max_tokens) for i in range(concurrency)))
    wall = time.perf_counter() - start
  first = [c[0] for c in chats]
  follow = [t for c in chats for t in c[1:]]
  last = [c[-1] for c in chats]
  tokens = sum(t["tokens"] for c in chats for t in c)
  med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
  return {
      "concurrency": concurrency, "turns": turns, "max_tokens": max_tokens,
      "ttft_first_turn_s": med([t["ttft_s"] for t in first]),
      "ttft_follow_up_s": med([t["ttft_s"] for t in follow]),
      "ttft_last_turn_s": med([t["ttft_s"] for t in last]),
      "decode_tps_per_stream": med([t["decode_tps"] for c in chats for t in c if t["tokens"] > 1]),
      "aggregate_tps": tokens / wall, "completion_tokens": tokens, "wall_s": wall,
      "last_turn_prompt_tokens": med([t["prompt_tokens"] for t in last if t["prompt_tokens"]]),
      "last_turn_cached_tokens": med([t["cached_tokens"] for t in last
                                      if t["cached_tokens"] is not None]),
      "chats": [[{k: v for k, v in t.items() if k != "text"} for t in c] for c in chats],
      "sample_reply": chats[0][-1]["text"][:200],
  }


def _measure(url: str, model: str, turns: int, max_tokens: int, log) -> dict:
  out = {}
  for concurrency in (1, 4):
    log(f"  concurrency {concurrency}: {concurrency} chat(s) of {turns} turns")
    out[f"c{concurrency}"] = asyncio.run(_scenario(url, model, concurrency, turns, max_tokens))
  return out


def _zoo(ctx: dict, reuse: bool) -> tuple[list[str], str, dict, str]:
  port = _free_port()
  cmd = [sys.executable, "-m", "litezoo.tools.serve", f"--model={ctx['model']}",
         f"--variant={ctx['variant']}", f"--quantize={ctx['recipe']}", f"--port={port}",
         f"--threads={ctx['threads']}", "--slots=4"]
  if not reuse:
    cmd.append("--noprefix_reuse")
  return cmd, f"http://127.0.0.1:{port}", {}, ctx["model_id"]


def _llamacpp(ctx: dict) -> tuple[list[str], str, dict, str]:
  root = pathlib.Path(ctx["llamacpp_dir"] or files.cache_root() / "llama.cpp" / LLAMACPP_VERSION)
  server = root / "bin" / "llama-server"
  if not server.exists():
    raise Skipped(f"llama-server is not built in {root}: run tools/setup_llamacpp.sh (opt-in)")
  if ctx["gguf"] is None:
    raise Skipped(f"{ctx['model_id']} has no GGUF source for llama.cpp")
  port = _free_port()
  kv = ctx["kv_cache_max_len"]
  cmd = [str(server), "-m", str(ctx["gguf"]), "--host", "127.0.0.1", "--port", str(port),
         "-t", str(ctx["threads"]), "-tb", str(ctx["threads"]), "-np", "4", "-c", str(4 * kv),
         "--jinja", "--no-webui"]
  return cmd, f"http://127.0.0.1:{port}", {"LD_LIBRARY_PATH": str(root / "bin")}, "gguf"


def _litertlm(ctx: dict) -> tuple[list[str], str, dict, str]:
  root = files.cache_root() / "litert-lm-cli" / LITERTLM_CLI_VERSION
  cli = root / "venv" / "bin" / "litert-lm"
  if not cli.exists():
    raise Skipped(f"the litert-lm CLI is not installed in {root}: run "
                  "tools/setup_litertlm_cli.sh (opt-in)")
  bundle = ctx["litertlm"]()
  port = _free_port()
  home = pathlib.Path(tempfile.mkdtemp(prefix="litert-lm-home-"))  # its ~/.litert-lm, not yours
  cmd = [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port)]
  return cmd, f"http://127.0.0.1:{port}", {"HOME": str(home)}, str(bundle)


def run(ctx: dict, peers: list[str], log) -> dict:
  """Runs each peer's server in turn; returns the results by peer. `ctx` holds model, variant,
  model_id, recipe, threads, kv_cache_max_len, gguf (path or None), litertlm (a callable giving
  the bundle's path), llamacpp_dir, turns, max_tokens, work (a directory for logs)."""
  results = {}
  for peer in peers:
    log(f"serving peer {peer}")
    try:
      if peer in ("zoo", "zoo_no_reuse"):
        cmd, url, env, model = _zoo(ctx, reuse=peer == "zoo")
        engine = "litezoo tools/serve.py" + ("" if peer == "zoo" else " --noprefix_reuse")
      elif peer == "llamacpp":
        cmd, url, env, model = _llamacpp(ctx)
        engine = f"llama.cpp llama-server ({LLAMACPP_VERSION} sdist), the shipped GGUF"
      elif peer == "litertlm":
        cmd, url, env, model = _litertlm(ctx)
        engine = f"litert-lm serve {LITERTLM_CLI_VERSION}, the zoo's .litertlm"
      else:
        raise Skipped(f"unknown peer {peer}; peers: {', '.join(PEERS)}")
    except Skipped as e:
      log(f"  skipped: {e}")
      results[peer] = {"skipped": str(e)}
      continue
    process = _Process(cmd, pathlib.Path(ctx["work"]) / f"serving-{peer}.log", env)
    try:
      process.wait_ready(url + ("/health" if peer.startswith("zoo") or peer == "llamacpp"
                                else "/v1/models"), timeout=1800)
      results[peer] = {"engine": engine, "command": " ".join(cmd[:1] + [
          re.sub(r"^/.*/", "", a) for a in cmd[1:]]), **_measure(
              url, model, ctx["turns"], ctx["max_tokens"], log)}
    except (Skipped, RuntimeError, httpx.HTTPError) as e:
      log(f"  failed: {e}")
      # One line: a server's error page is HTML.
      results[peer] = {"skipped": " ".join(re.sub(r"<[^>]*>", " ", f"{type(e).__name__}: {e}")
                                           .split())[:500]}
    finally:
      process.stop()
  return results


def markdown(data: dict) -> str:
  turns = next((r["c1"]["turns"] for r in data["results"].values() if "c1" in r), "last")
  rows = [f"| server | TTFT turn 1 (c=1) | TTFT turn {turns} (c=1) | cached tokens turn {turns} | "
          "decode tok/s (c=1) | TTFT follow-up (c=4) | aggregate tok/s (c=4) |",
          "|---|---|---|---|---|---|---|"]
  # PEERS' order, whatever order the JSON was read in (it is written with sorted keys).
  for peer, r in sorted(data["results"].items(),
                        key=lambda item: (PEERS.index(item[0]) if item[0] in PEERS else len(PEERS),
                                          item[0])):
    if "skipped" in r:
      reason = " ".join(r["skipped"].split()).replace("|", "/")[:200]
      rows.append(f"| {peer} | skipped: {reason} | | | | | |")
      continue
    c1, c4 = r["c1"], r["c4"]
    cached = c1["last_turn_cached_tokens"]  # None: the server does not report it
    cached = ("not reported" if cached is None
              else f"{cached} of {c1['last_turn_prompt_tokens']}")
    rows.append(f"| {peer} | {c1['ttft_first_turn_s'] * 1e3:.0f} ms | "
                f"{c1['ttft_last_turn_s'] * 1e3:.0f} ms | {cached} | "
                f"{c1['decode_tps_per_stream']:.1f} | "
                f"{c4['ttft_follow_up_s'] * 1e3:.0f} ms | {c4['aggregate_tps']:.1f} |")
  return "\n".join(rows) + "\n"


def plot(data: dict, path) -> None:
  """Two panels of grouped bars, one group per measured server: time to first token in ms
  (turn 1 and the last turn at concurrency 1, a follow-up turn at concurrency 4; lower is
  better) and tokens/s (decode per stream at concurrency 1, aggregate at concurrency 4)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  peers = [p for p in PEERS if "c1" in data["results"].get(p, {})]
  turns = data["results"][peers[0]]["c1"]["turns"] if peers else "last"
  panels = (
      ("time to first token (ms, lower is better)", 1e3,
       (("turn 1, c=1", "c1", "ttft_first_turn_s"), (f"turn {turns}, c=1", "c1",
                                                         "ttft_last_turn_s"),
        ("follow-up, c=4", "c4", "ttft_follow_up_s"))),
      ("tokens/s (higher is better)", 1.0,
       (("decode per stream, c=1", "c1", "decode_tps_per_stream"),
        ("aggregate, c=4", "c4", "aggregate_tps"))))
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
  width = 0.8 / max(1, len(peers))
  for ax, (title, scale, figures) in zip(axes, panels):
    for i, peer in enumerate(peers):
      r = data["results"][peer]
      xs = [j + i * width for j in range(len(figures))]
      bars = ax.bar(xs, [r[c][key] * scale for _, c, key in figures], width, label=peer)
      ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([j + width * (len(peers) - 1) / 2 for j in range(len(figures))],
                  [label for label, _, _ in figures], fontsize=8)
    ax.set_title(title)
  axes[0].set_yscale("log")  # one slow server's follow-up would flatten every other bar
  axes[0].legend(fontsize=8)
  fig.suptitle(f"serving {data['model']}-{data['variant']} {data['recipe']}, "
               f"{data['threads']} threads, {data['machine'].get('cpu', '')}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  plt.close(fig)


def conditions(data: dict) -> str:
  """One line: when, the machine and its load (the figures depend on it)."""
  m = data["machine"]
  cpu = f" ({m['cpu']}; {measure.isa_text(m)})" if "isa" in m else ""
  return (f"Measured {data['started'][:16]} UTC on {m['cpus']} CPUs{cpu}, load average "
          f"{data['load_average_start'][0]:.1f} at the start and "
          f"{m['load_average_at_end'][0]:.1f} at the end; {data['seconds']:.0f} s in all.")

"""A bounded load test of a running OpenAI-compatible server on loopback: a fixed number of
requests from a fixed number of concurrent clients (asyncio + httpx), then it stops.

Every answer is checked against the greedy reference of its prompt (fetched first, one request at a
time), so a lost, truncated or mixed-up response counts as a mismatch. The mix: streaming,
non-streaming, cancelled (the client closes the stream after a few chunks), killed (the socket is
dropped mid-stream without a word), slow readers, malformed JSON and oversized bodies; a 429 is
retried after its Retry-After (counted, not an error). The server's /health is sampled to check
the queue never held more than its bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import socket
import time
from urllib.parse import urlsplit

import httpx

KINDS = ("stream", "plain", "cancel", "kill", "slow", "malformed", "huge")
DEFAULT_MIX = {"stream": 0.35, "plain": 0.3, "cancel": 0.1, "kill": 0.08, "slow": 0.07,
               "malformed": 0.05, "huge": 0.05}


@dataclasses.dataclass
class Report:
  requests: int
  concurrency: int
  by_kind: dict
  server_errors: int  # 5xx answers, broken streams, unexpected statuses
  mismatches: int  # an answer that is not its prompt's greedy reference
  rejected_429: int
  max_queued_seen: int
  max_queue: int
  latency_p50_s: float
  latency_p95_s: float
  ttft_p50_s: float
  ttft_p95_s: float
  completion_tokens: int
  tokens_per_second: float
  wall_seconds: float
  problems: list

  def ok(self) -> bool:
    return (self.server_errors == 0 and self.mismatches == 0
            and self.max_queued_seen <= self.max_queue)

  def line(self) -> str:
    return (f"{self.requests} requests, {self.concurrency} clients in {self.wall_seconds:.1f} s: "
            f"{self.server_errors} server errors, {self.mismatches} mismatches, "
            f"{self.rejected_429} x 429 (retried), queue peak {self.max_queued_seen}/"
            f"{self.max_queue}; latency p50 {self.latency_p50_s:.3f} s p95 "
            f"{self.latency_p95_s:.3f} s, TTFT p50 {self.ttft_p50_s:.3f} s p95 "
            f"{self.ttft_p95_s:.3f} s; {self.tokens_per_second:.1f} tok/s")


def _percentile(values: list[float], q: float) -> float:
  if not values:
    return 0.0
  ordered = sorted(values)
  return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class _Run:

  def __init__(self, base_url: str, model: str, prompts: list[str], max_tokens: int,
               api_key: str | None, max_body_bytes: int, chat: bool):
    root = base_url.rstrip("/")
    self.base = root[:-len("/v1")] if root.endswith("/v1") else root  # paths below carry /v1
    self.model, self.prompts = model, prompts
    self.max_tokens, self.chat, self.max_body = max_tokens, chat, max_body_bytes
    self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    self.reference: dict[str, str] = {}
    self.latencies: list[float] = []
    self.ttfts: list[float] = []
    self.tokens = 0
    self.errors = 0
    self.mismatches = 0
    self.rejected = 0
    self.problems: list[str] = []
    self.by_kind: dict[str, int] = {}
    self.max_queued = 0
    self.max_queue = 0

  @property
  def path(self) -> str:
    return "/v1/chat/completions" if self.chat else "/v1/completions"

  def body(self, prompt: str, stream: bool) -> dict:
    body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0}
    if self.chat:
      body["messages"] = [{"role": "user", "content": prompt}]
    else:
      body["prompt"] = prompt
    if stream:
      body.update(stream=True, stream_options={"include_usage": True})
    return body

  def problem(self, text: str, mismatch: bool = False) -> None:
    if mismatch:
      self.mismatches += 1
    else:
      self.errors += 1
    if len(self.problems) < 20:
      self.problems.append(text)

  @staticmethod
  def text_of(choice: dict) -> str:
    if "message" in choice:
      return choice["message"]["content"]
    if "delta" in choice:
      return choice["delta"].get("content") or ""
    return choice.get("text", "")

  async def post(self, client: httpx.AsyncClient, body: dict) -> httpx.Response:
    """POSTs, retrying after a 429's Retry-After."""
    while True:
      response = await client.post(self.path, json=body, headers=self.headers)
      if response.status_code != 429:
        return response
      self.rejected += 1
      await asyncio.sleep(min(float(response.headers.get("retry-after", "1")), 2.0) *
                          random.uniform(0.5, 1.0))

  async def plain(self, client, prompt: str) -> None:
    start = time.perf_counter()
    r = await self.post(client, self.body(prompt, False))
    if r.status_code != 200:
      return self.problem(f"plain: HTTP {r.status_code} {r.text[:200]}")
    data = r.json()
    self.latencies.append(time.perf_counter() - start)
    self.tokens += data["usage"]["completion_tokens"]
    text = self.text_of(data["choices"][0])
    if text != self.reference[prompt]:
      self.problem(f"plain: {text!r} != reference {self.reference[prompt]!r}", mismatch=True)

  async def stream(self, client, prompt: str, stop_after: int | None = None,
                   slow: float = 0.0) -> None:
    start = time.perf_counter()
    while True:
      async with client.stream("POST", self.path, json=self.body(prompt, True),
                               headers=self.headers) as r:
        if r.status_code == 429:
          self.rejected += 1
          await asyncio.sleep(min(float(r.headers.get("retry-after", "1")), 2.0) *
                              random.uniform(0.5, 1.0))
          continue
        if r.status_code != 200:
          await r.aread()
          return self.problem(f"stream: HTTP {r.status_code} {r.text[:200]}")
        text, chunks, done, usage, first = "", 0, False, None, None
        async for line in r.aiter_lines():
          if not line:
            continue
          if not line.startswith("data: "):
            if line.startswith(":"):
              continue  # an SSE comment (keep-alive ping)
            return self.problem(f"stream: not an SSE data line: {line[:100]!r}")
          payload = line[len("data: "):]
          if payload == "[DONE]":
            done = True
            break
          event = json.loads(payload)
          if "error" in event:
            return self.problem(f"stream: error event {payload[:200]}")
          if event.get("usage"):
            usage = event["usage"]
          for choice in event.get("choices", []):
            piece = self.text_of(choice)
            if piece and first is None:
              first = time.perf_counter() - start
            text += piece
          chunks += 1
          if slow:
            await asyncio.sleep(slow)
          if stop_after is not None and chunks >= stop_after:
            break  # leaving the block closes the connection: the server must cancel
        break
    reference = self.reference[prompt]
    if stop_after is not None:
      if not reference.startswith(text):
        self.problem(f"cancelled stream: {text!r} is not a prefix of {reference!r}",
                     mismatch=True)
      return
    if not done:
      return self.problem("stream: ended without [DONE]")
    self.latencies.append(time.perf_counter() - start)
    if first is not None:
      self.ttfts.append(first)
    if usage is None:
      return self.problem("stream: no usage chunk despite include_usage")
    self.tokens += usage["completion_tokens"]
    if text != reference:
      self.problem(f"stream: {text!r} != reference {reference!r}", mismatch=True)

  async def kill(self, prompt: str) -> None:
    """A client that dies mid-stream: raw socket, read a little, drop the connection."""
    url = urlsplit(self.base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    payload = json.dumps(self.body(prompt, True)).encode()
    head = (f"POST {self.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n")
    head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
    writer.write(head.encode() + b"\r\n" + payload)
    await writer.drain()
    try:
      await asyncio.wait_for(reader.read(200), timeout=30)
    except asyncio.TimeoutError:
      pass
    sock = writer.get_extra_info("socket")
    if sock is not None:  # RST rather than FIN: as a killed process's kernel may do
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()

  async def malformed(self, client) -> None:
    r = await client.post(self.path, content=b'{"model": "x", "messages": [', headers={
        **self.headers, "Content-Type": "application/json"})
    if r.status_code != 400 or r.json().get("error", {}).get("code") != "invalid_json":
      self.problem(f"malformed JSON: HTTP {r.status_code} {r.text[:200]}")

  async def huge(self, client) -> None:
    body = json.dumps(self.body("x" * (self.max_body + 1), False)).encode()
    r = await client.post(self.path, content=body, headers={
        **self.headers, "Content-Type": "application/json"})
    if r.status_code != 413:
      self.problem(f"huge body: HTTP {r.status_code} {r.text[:200]}")

  async def one(self, client, kind: str, prompt: str) -> None:
    self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
    try:
      if kind == "plain":
        await self.plain(client, prompt)
      elif kind == "stream":
        await self.stream(client, prompt)
      elif kind == "slow":
        await self.stream(client, prompt, slow=0.05)
      elif kind == "cancel":
        await self.stream(client, prompt, stop_after=2)
      elif kind == "kill":
        await self.kill(prompt)
      elif kind == "malformed":
        await self.malformed(client)
      elif kind == "huge":
        await self.huge(client)
    except (httpx.HTTPError, OSError, json.JSONDecodeError, KeyError) as e:
      self.problem(f"{kind}: {type(e).__name__}: {e}")

  async def watch(self, client, stop: asyncio.Event) -> None:
    while not stop.is_set():
      try:
        health = (await client.get("/health")).json()
        self.max_queued = max(self.max_queued, health["max_queued_seen"], health["queued"])
        self.max_queue = health["max_queue"]
      except (httpx.HTTPError, ValueError, KeyError) as e:
        self.problem(f"health: {type(e).__name__}: {e}")
      try:
        await asyncio.wait_for(stop.wait(), 0.2)
      except asyncio.TimeoutError:
        pass


async def _main(run: _Run, requests: int, concurrency: int, mix: dict, seed: int,
                timeout: float) -> Report:
  rng = random.Random(seed)
  limits = httpx.Limits(max_connections=concurrency + 2)
  async with httpx.AsyncClient(base_url=run.base, timeout=timeout, limits=limits) as client:
    for prompt in run.prompts:  # the references, one at a time
      r = await client.post(run.path, json=run.body(prompt, False), headers=run.headers)
      r.raise_for_status()
      run.reference[prompt] = run.text_of(r.json()["choices"][0])
    plan = [(rng.choices(list(mix), weights=list(mix.values()))[0], rng.choice(run.prompts))
            for _ in range(requests)]
    queue: asyncio.Queue = asyncio.Queue()
    for item in plan:
      queue.put_nowait(item)

    async def client_loop():
      while not queue.empty():
        kind, prompt = queue.get_nowait()
        await run.one(client, kind, prompt)

    stop = asyncio.Event()
    watcher = asyncio.ensure_future(run.watch(client, stop))
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(concurrency))),
                           timeout=timeout * max(1, requests // concurrency))
    wall = time.perf_counter() - start
    stop.set()
    await watcher
    health = (await client.get("/health")).json()  # the server still answers after all that
    run.max_queued = max(run.max_queued, health["max_queued_seen"])
    run.max_queue = health["max_queue"]
  return Report(
      requests=requests, concurrency=concurrency, by_kind=run.by_kind, server_errors=run.errors,
      mismatches=run.mismatches, rejected_429=run.rejected, max_queued_seen=run.max_queued,
      max_queue=run.max_queue, latency_p50_s=_percentile(run.latencies, 0.5),
      latency_p95_s=_percentile(run.latencies, 0.95), ttft_p50_s=_percentile(run.ttfts, 0.5),
      ttft_p95_s=_percentile(run.ttfts, 0.95), completion_tokens=run.tokens,
      tokens_per_second=run.tokens / wall if wall else 0.0, wall_seconds=wall,
      problems=run.problems)


def run(base_url: str, model: str, prompts: list[str], *, requests: int = 200,
        concurrency: int = 8, max_tokens: int = 16, chat: bool = True,
        api_key: str | None = None, max_body_bytes: int = 1 << 20,
        mix: dict | None = None, seed: int = 0, timeout: float = 120.0) -> Report:
  """Runs the load test against `base_url` (e.g. http://127.0.0.1:8000/v1) and returns its
  Report; it stops by itself after `requests` requests (or `timeout` per request round)."""
  if urlsplit(base_url).hostname not in ("127.0.0.1", "localhost", "::1"):
    raise ValueError(f"the load test only targets loopback, not {base_url}")
  state = _Run(base_url, model, prompts, max_tokens, api_key, max_body_bytes, chat)
  return asyncio.run(_main(state, requests, concurrency, mix or DEFAULT_MIX, seed, timeout))


def summary(report: Report) -> dict:
  out = dataclasses.asdict(report)
  out["ok"] = report.ok()
  return out

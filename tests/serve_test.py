"""The OpenAI-compatible server (tools/serve.py) on tiny models, started on loopback and driven
by the official `openai` client, httpx and curl: chat and completions, streaming and not, greedy
answers equal to tools/generate's, prefix reuse, stop strings, constrained decoding (every answer
validates against its JSON schema even from random weights), OpenAI-format errors, cancellation,
the bounded queue, body limits, a short load test and a drain on SIGTERM.

The full load test (200 requests) is serve_load_test (tier `integration`)."""

import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from litezoo.runtime import generate
from litezoo.tests import serving, testing
from litezoo.tools.server import app as app_lib, engine, load

KEY = "test-key"
Server = serving.Server
chat_args = serving.chat_args
SIGNATURES = serving.SIGNATURES


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory):
  return serving.write_chat_checkpoint(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def server(chat_checkpoint):
  s = Server(*chat_args(chat_checkpoint), f"--api_key={KEY}", "--max_queue=3", "--slots=2",
             "--max_body_bytes=65536")
  yield s
  assert s.stop() == 0, s.log()[-3000:]
  assert "Traceback" not in s.log(), s.log()[-3000:]


@pytest.fixture(scope="module")
def client(server):
  return openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=60)


def ask(client, text, **kwargs):
  kwargs.setdefault("max_tokens", 12)
  kwargs.setdefault("temperature", 0)
  return client.chat.completions.create(model="smollm2-tiny",
                                        messages=[{"role": "user", "content": text}], **kwargs)


def test_models_and_health(server, client):
  assert [m.id for m in client.models.list().data] == ["smollm2-tiny"]
  assert client.models.retrieve("smollm2-tiny").owned_by == "litezoo"
  health = server.health()
  assert health["status"] == "ok" and health["max_queue"] == 3 and health["slots"] == 2


def test_a_first_run_converts_in_a_child_and_serves_without_the_converter(server):
  """The module's first server converted its model (a fresh cache) in a forked child: the
  converter's TensorFlow, hundreds of MiB resident for as long as the server runs, never loads
  in the server."""
  assert "on first use" in server.log(), server.log()[-2000:]
  with open(f"/proc/{server.proc.pid}/maps") as maps:
    assert "tensorflow" not in maps.read()


def test_greedy_chat_equals_tools_generate(server, client, chat_checkpoint):
  reply = ask(client, "Tell me a story.", max_tokens=10)
  generated = testing.run_tool("generate", *chat_args(chat_checkpoint), "--prompt=Tell me a story.",
                               "--max_new_tokens=10")
  assert generated.returncode == 0, generated.stderr[-2000:]
  assert reply.choices[0].message.content == generated.stdout[:-1]  # generate ends with "\n"
  assert reply.choices[0].finish_reason == "length"
  assert reply.usage.completion_tokens == 10 and reply.object == "chat.completion"


def test_streaming_equals_the_whole_answer_and_reports_usage(client):
  whole = ask(client, "Count to ten.", max_tokens=16)
  chunks = list(ask(client, "Count to ten.", max_tokens=16, stream=True,
                    stream_options={"include_usage": True}))
  assert chunks[0].choices[0].delta.role == "assistant"
  text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
  assert text == whole.choices[0].message.content
  finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
  assert finishes[-1] == whole.choices[0].finish_reason and set(finishes[:-1]) == {None}
  assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
  assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_the_next_turn_prefills_only_what_is_new(client):
  messages = [{"role": "user", "content": "A first question, rather long, to fill the cache."}]
  first = client.chat.completions.create(model="smollm2-tiny", messages=messages, max_tokens=8,
                                         temperature=0)
  messages += [{"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "And then?"}]
  second = client.chat.completions.create(model="smollm2-tiny", messages=messages, max_tokens=8,
                                          temperature=0)
  cached = second.usage.prompt_tokens_details.cached_tokens
  assert cached >= first.usage.prompt_tokens, (cached, first.usage)
  assert cached < second.usage.prompt_tokens


def test_stop_strings_cut_the_answer(client):
  full = ask(client, "Say something.", max_tokens=20).choices[0].message.content
  stop = full[5:8]
  assert stop.strip(), full
  cut = ask(client, "Say something.", max_tokens=20, stop=[stop, "\x00never"])
  assert cut.choices[0].message.content == full[:full.index(stop)]
  assert cut.choices[0].finish_reason == "stop"
  streamed = ask(client, "Say something.", max_tokens=20, stop=stop, stream=True)
  assert "".join(c.choices[0].delta.content or "" for c in streamed) == full[:full.index(stop)]


def test_completions_on_a_chat_model_and_sampling_is_seeded(client):
  done = client.completions.create(model="smollm2", prompt="Once upon", max_tokens=6,
                                   temperature=0)
  assert done.object == "text_completion" and done.usage.completion_tokens == 6
  hot = dict(model="smollm2-tiny", prompt="Once upon", max_tokens=12, temperature=1.5)
  a = client.completions.create(seed=1, **hot).choices[0].text
  assert a == client.completions.create(seed=1, **hot).choices[0].text
  assert a != client.completions.create(seed=2, **hot).choices[0].text
  with pytest.raises(openai.BadRequestError, match="unrecognized request argument: "
                     "response_format; it applies to /v1/chat/completions"):
    client.completions.create(model="smollm2-tiny", prompt="{", max_tokens=4,
                              extra_body={"response_format": {"type": "json_object"}})
  # Its logprobs is a count of alternatives: 0 is plain text; more is not supported, said so.
  assert client.completions.create(model="smollm2-tiny", prompt="Once upon", max_tokens=2,
                                   temperature=0, logprobs=0).choices[0].text
  with pytest.raises(openai.BadRequestError, match=r"^Error code: 400 - .*logprobs=2 is not "
                     r"supported by this server \(only 0\)"):
    client.completions.create(model="smollm2-tiny", prompt="Once upon", max_tokens=2, logprobs=2)


SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 6},
    "age": {"type": "integer", "minimum": 0, "maximum": 130},
    "ok": {"type": "boolean"},
    "color": {"enum": ["red", "green", "blue"]},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2}},
    "required": ["name", "age", "ok", "color", "tags"], "additionalProperties": False}


@pytest.mark.parametrize("seed", range(6))
def test_json_schema_answers_validate_even_from_random_weights(client, seed):
  reply = ask(client, "Describe a person.", max_tokens=120, temperature=1.0, seed=seed,
              response_format={"type": "json_schema",
                               "json_schema": {"name": "person", "schema": SCHEMA}})
  assert reply.choices[0].finish_reason == "stop", reply.choices[0].message.content
  jsonschema.validate(json.loads(reply.choices[0].message.content), SCHEMA)


def test_json_object_and_regex_and_grammar(client):
  regex = ask(client, "A date?", max_tokens=30, temperature=1.0, seed=3,
              response_format={"type": "regex", "regex": r"\d{4}-\d{2}-\d{2}"})
  assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", regex.choices[0].message.content)
  grammar = ask(client, "Yes or no?", max_tokens=10, temperature=1.0, seed=4,
                response_format={"type": "grammar", "grammar": 'start: "yes" | "no"'})
  assert grammar.choices[0].message.content in ("yes", "no")
  streamed = ask(client, "JSON?", max_tokens=60, temperature=0.7, seed=5, stream=True,
                 response_format={"type": "json_schema", "json_schema": {
                     "name": "x", "schema": {"type": "object", "properties": {
                         "a": {"type": "integer", "maximum": 99, "minimum": 0}},
                         "required": ["a"], "additionalProperties": False}}})
  assert json.loads("".join(c.choices[0].delta.content or "" for c in streamed))["a"] in range(100)
  obj = ask(client, "JSON?", max_tokens=120, response_format={"type": "json_object"})
  if obj.choices[0].finish_reason == "stop":
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


@pytest.mark.parametrize("kwargs, status, param, code", [
    (dict(model="gpt-4o"), 404, "model", "model_not_found"),
    (dict(temperature=-1), 400, "temperature", None),
    (dict(n=2), 400, "n", "unsupported_parameter"),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), 400, "messages[0].role", None),
    (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "data:,"}}]}]), 400, "messages[0].content[0]", "unsupported_content"),
    (dict(messages=[{"role": "user", "content": "word " * 1200}]), 400, "messages",
     "context_length_exceeded"),
    (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "nonsense"}}}}}), 400,
     "response_format.json_schema.schema", None),
    (dict(max_tokens=0), 400, "max_tokens", None),
    # A trial: past llguidance's lexer limits, a 500 and a traceback in the log.
    # Seeded: whether the lexer outgrows its limits depends on the tokens written (greedy
    # writes "aaaa", within them; 11 of the first 12 seeds go past them).
    (dict(response_format={"type": "regex", "regex": "(a|aa)*(b|bb){1000}"}, temperature=1.0,
          seed=0), 400, "response_format", None),
    (dict(stop=["a", "b", "c", "d", "e"]), 400, "stop", None),
    # A trial: 4 stop strings of 250 KB held the model for 258 s (checked at every token).
    (dict(stop=["x" * 1001]), 400, "stop", None),
    (dict(stop=["}"], response_format={"type": "json_object"}), 400, "stop", None),
    (dict(messages=[{"role": ["user"], "content": "hi"}]), 400, "messages[0].role", None),
    (dict(temperature=10**400), 400, "temperature", None),
    (dict(n=True), 400, "n", "unsupported_parameter"),
    (dict(max_tokens=10**9), 400, "max_tokens", "context_length_exceeded"),
    (dict(max_completion_tokens=2000, max_tokens=None), 400, "max_completion_tokens",
     "context_length_exceeded"),
    (dict(max_completion_tokens=3, max_tokens=500), 400, "max_tokens", None),
    (dict(model=5), 400, "model", None),
    (dict(temperature=0, top_p=0.5), 400, "top_p", None),
    (dict(temperature=0, extra_body={"top_k": 3}), 400, "top_k", None),
    (dict(messages=[{"role": "user", "content": "hi", "name": "bob"}]), 400, "messages[0].name",
     "unsupported_parameter"),
    (dict(stream=True, stream_options={"include_usage": "no"}), 400,
     "stream_options.include_usage", None),
    (dict(stream=True, stream_options={"include_obfuscation": True}), 400,
     "stream_options.include_obfuscation", "unsupported_parameter"),
    (dict(store=True), 400, "store", "unsupported_parameter"),
    # A trial: "unrecognized request argument" for a standard field.
    (dict(top_logprobs=3), 400, "top_logprobs", "unsupported_parameter"),
    (dict(logprobs=True, top_logprobs=3), 400, "logprobs", "unsupported_parameter"),
    (dict(user=[1]), 400, "user", None),
    (dict(messages=[{"content": "hi"}]), 400, "messages[0].role", "missing_required_parameter"),
])
def test_errors_in_openai_format(client, kwargs, status, param, code):
  request = dict(model="smollm2-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
  with pytest.raises(openai.APIStatusError) as raised:
    if kwargs.get("stream"):  # a stream's error comes with the response, before any event
      with client.chat.completions.create(**{**request, **kwargs}):
        pass
    client.chat.completions.create(**{**request, **kwargs})
  e = raised.value
  assert e.status_code == status and e.param == param, e.body
  if code:
    assert e.code == code
  assert "Traceback" not in json.dumps(e.body)


def test_held_back_text_is_the_longest_stop_prefix_ending_the_reply():
  """engine._held (linear in the stop's length per token) against its definition."""
  rng = np.random.default_rng(0)
  for _ in range(3000):
    text = "".join(rng.choice(list("ab"), rng.integers(0, 12)))
    stop = "".join(rng.choice(list("ab"), rng.integers(1, 8)))
    expected = max((k for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)
    assert engine._held(text, stop) == expected, (text, stop)  # pylint: disable=protected-access


CAPACITY = int(next(a for a in SIGNATURES if a.startswith("--kv_cache_max_len=")).split("=")[1])


def _refused(create, **kwargs):
  with pytest.raises(openai.BadRequestError) as raised:
    create(**kwargs)
  assert raised.value.code == "context_length_exceeded"
  return raised.value.body["message"]


def test_max_tokens_may_fill_the_cache_and_one_more_is_refused(client):
  """A reply to a prompt of P tokens can have CAPACITY - P + 1: the cache holds the prompt and
  every new token but the last, which is never fed back. That bound is the largest max_tokens
  accepted, and where a reply without max_tokens stops. A prompt near the cache's end keeps the
  replies short."""
  messages = [{"role": "user", "content": "word " * 198}]
  chat = dict(model="smollm2-tiny", messages=messages, temperature=0)
  prompt = client.chat.completions.create(**chat, max_tokens=1).usage.prompt_tokens
  room = CAPACITY - prompt + 1
  assert 1 < room < 30  # the prompt fills nearly all the cache
  for limit in ({"max_tokens": room}, {"max_completion_tokens": room}, {}):
    reply = client.chat.completions.create(**chat, **limit)
    assert reply.choices[0].finish_reason == "length", limit
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt, room), limit
    assert reply.usage.total_tokens == CAPACITY + 1
  for name in ("max_tokens", "max_completion_tokens"):
    assert _refused(client.chat.completions.create, **chat, **{name: room + 1}) == (
        f"this model's context (KV cache) holds {CAPACITY} tokens, but the messages take "
        f"{prompt} and {name} asks for {room + 1} more: lower {name} to at most {room} (or leave "
        "it out to fill the context)")

  # Completions: the same bound, and the default of 16 stops at the cache's end when it is less.
  text = dict(model="smollm2-tiny", prompt="word " * 204, temperature=0)
  prompt = client.completions.create(**text, max_tokens=1).usage.prompt_tokens
  room = CAPACITY - prompt + 1
  assert 1 < room < 16
  for limit in ({"max_tokens": room}, {}):
    done = client.completions.create(**text, **limit)
    assert done.choices[0].finish_reason == "length", limit
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (prompt, room), limit
  assert _refused(client.completions.create, **text, max_tokens=room + 1) == (
      f"this model's context (KV cache) holds {CAPACITY} tokens, but the prompt takes {prompt} "
      f"and max_tokens asks for {room + 1} more: lower max_tokens to at most {room}")

  # A prompt as long as the cache still gets its one token; a longer one is refused.
  def tokens(extra: int) -> int:  # the prompt's length, from the reply or the refusal
    try:
      return client.completions.create(**{**text, "prompt": text["prompt"] + "x" * extra},
                                       max_tokens=1).usage.prompt_tokens
    except openai.BadRequestError as e:
      return int(re.search(r"the prompt takes (\d+)", e.body["message"]).group(1))
  extra = 0
  while tokens(extra + 1) <= CAPACITY:  # the tiny tokenizer's pieces are a few letters long
    extra += 1
  assert tokens(extra) == CAPACITY, "no run of x's ends the prompt at the cache's length"
  full = client.completions.create(**{**text, "prompt": text["prompt"] + "x" * extra})
  assert (full.usage.prompt_tokens, full.usage.completion_tokens) == (CAPACITY, 1)
  assert full.choices[0].finish_reason == "length"
  assert _refused(client.completions.create, **{**text, "prompt": text["prompt"] + "x" * (
      extra + 1)}) == (f"this model's context (KV cache) holds {CAPACITY} tokens, but the prompt "
                       f"takes {tokens(extra + 1)}: shorten it")


def test_neutral_values_and_empty_message_fields_are_accepted(client):
  """What clients send by default, or echo back from a reply, is not an option that cannot
  apply: top_p 1 and a seed with greedy decoding, an assistant message with refusal=None."""
  first = ask(client, "Hi!", max_tokens=4, top_p=1, seed=7)
  again = client.chat.completions.create(
      model="smollm2-tiny", max_tokens=4, temperature=0, max_completion_tokens=4,
      messages=[{"role": "user", "content": "Hi!"},
                first.choices[0].message.model_dump(),  # refusal, tool_calls ... all None
                {"role": "user", "content": "And?", "name": None}])
  assert first.choices[0].message.content and again.usage.completion_tokens == 4


def test_a_reply_cut_inside_a_multibyte_character_drops_its_first_bytes():
  # A byte-level decode of a cut "é" (0xC3 0xA9) ends in U+FFFD until the second byte comes.
  pieces = {1: b"caf", 2: b"\xc3", 3: b"\xa9"}
  decode = lambda ids: b"".join(pieces[i] for i in ids).decode("utf-8", errors="replace")
  cut = engine.TextAssembler(decode, [])
  assert cut.add(1) == "caf" and cut.add(2) == ""
  assert cut.flush() == "" and cut.text == "caf"
  whole = engine.TextAssembler(decode, [])
  assert [whole.add(i) for i in (1, 2, 3)] == ["caf", "", "\u00e9"] and whole.flush() == ""


def test_head_health_and_helpshort_lists_the_model_flags(server):
  assert httpx.head(server.url + "/health").status_code == 200
  run = testing.run_tool("serve", "--helpshort")
  assert "--model:" in run.stdout + run.stderr and "--quantize:" in run.stdout + run.stderr


def test_a_wrong_api_key_is_401_and_unknown_paths_404(server):
  with pytest.raises(openai.AuthenticationError) as raised:
    openai.OpenAI(base_url=server.v1, api_key="wrong", max_retries=0).models.list()
  assert raised.value.code == "invalid_api_key"
  r = httpx.get(server.url + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
  assert r.status_code == 404 and r.json()["error"]["message"]
  r = httpx.get(server.v1 + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
  assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
  # No redirect to the path without the slash: a client following it would post twice.
  r = httpx.post(server.v1 + "/chat/completions/", headers={"Authorization": f"Bearer {KEY}"},
                 json={})
  assert r.status_code == 404 and r.json()["error"]["message"]


def test_malformed_json_and_huge_bodies_are_refused_and_the_server_goes_on(server, client):
  headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
  r = httpx.post(server.v1 + "/chat/completions", content=b'{"model": ', headers=headers)
  assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
  r = httpx.post(server.v1 + "/chat/completions", headers=headers, content=(
      b'{"model": "smollm2-tiny", "max_tokens": ' + b"9" * 5000 + b"}"))
  assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
  r = httpx.post(server.v1 + "/chat/completions", content=b"[" + b"1," * 40000 + b"1]",
                 headers=headers)
  assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
  r = httpx.post(server.v1 + "/chat/completions", content=b"[" * 30000 + b"]" * 30000,
                 headers=headers)
  assert r.status_code == 400 and "nests too deeply" in r.json()["error"]["message"]
  r = httpx.post(server.v1 + "/chat/completions", headers=headers, content=(
      b'{"model": "smollm2-tiny", "messages": [{"role": "user", "content": "\\ud800 hi"}]}'))
  assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].content", r.text
  assert ask(client, "still there?", max_tokens=2).usage.completion_tokens == 2


def test_a_web_page_cannot_use_the_loopback_server(server):
  """A trial: any Host and any Content-Type were served, so a page in the user's browser could
  POST a "simple" (form or text/plain) request without CORS asking first, and with DNS
  rebinding (its own name resolving to 127.0.0.1) read the reply."""
  body = json.dumps({"model": "smollm2-tiny", "max_tokens": 2,
                     "messages": [{"role": "user", "content": "hi"}]})
  auth = {"Authorization": f"Bearer {KEY}"}
  for kind in ("text/plain", "application/x-www-form-urlencoded", None):
    r = httpx.post(server.v1 + "/chat/completions", content=body,
                   headers={**auth, **({"Content-Type": kind} if kind else {})})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
  port = server.v1.split(":")[-1].split("/")[0]
  for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example"):
    r = httpx.get(server.v1 + "/models", headers={**auth, "Host": host})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", r.text
    assert "it listens on loopback" in r.json()["error"]["message"]
  for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}", "localhost"):
    r = httpx.post(server.v1 + "/chat/completions", content=body,
                   headers={**auth, "Host": host, "Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200, (host, r.text)


def test_host_names_are_read_without_the_port():
  assert [app_lib.host_name(h) for h in ("[::1]:8000", "[::1]", "Localhost:80", "127.0.0.1",
                                        "::1", "")] == ["::1", "::1", "localhost", "127.0.0.1",
                                                        "::1", ""]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_sse_framing_with_curl(server):
  body = json.dumps({"model": "smollm2-tiny", "max_tokens": 5, "temperature": 0, "stream": True,
                     "messages": [{"role": "user", "content": "hi"}]})
  out = subprocess.run(["curl", "-sN", "-H", f"Authorization: Bearer {KEY}", "-H",
                        "Content-Type: application/json", "-d", body,
                        server.v1 + "/chat/completions"], capture_output=True, check=True)
  text = out.stdout.decode()
  events = text.split("\n\n")
  assert events[-1] == "" and events[-2] == "data: [DONE]", text
  for event in events[:-2]:
    assert event.startswith("data: {") and "\n" not in event, event
    assert json.loads(event[len("data: "):])["object"] == "chat.completion.chunk"


def _long_stream(server, max_tokens=1000):
  return httpx.stream("POST", server.v1 + "/chat/completions", headers={
      "Authorization": f"Bearer {KEY}"}, json={
          "model": "smollm2-tiny", "max_tokens": max_tokens, "temperature": 0, "stream": True,
          "messages": [{"role": "user", "content": "go on"}]}, timeout=60)


def test_a_client_that_leaves_mid_stream_cancels_its_generation(server):
  before = server.health()["cancelled"]
  with _long_stream(server, 1000) as r:
    lines = r.iter_lines()
    next(lines)
    next(lines)
  deadline = time.time() + 10
  while server.health()["cancelled"] == before and time.time() < deadline:
    time.sleep(0.05)
  assert server.health()["cancelled"] == before + 1


class _Counting:
  """A decoder for scheduling tests: the next token is (last token + 1) % 50, logged per call
  under this decoder's name; its first prefill waits until `gate()` is true."""

  def __init__(self, name, calls, gate=lambda: True):
    self.name, self.calls, self.gate = name, calls, gate
    self.kv_cache_max_len, self.position = 100, 0

  def reset(self):
    self.position = 0

  def _logits(self, token):
    logits = np.zeros(50, np.float32)
    logits[(token + 1) % 50] = 1.0
    return logits

  def prefill(self, tokens, all_logits=False):
    deadline = time.time() + 30
    while not self.gate() and time.time() < deadline:
      time.sleep(0.001)
    self.calls.append((self.name, "prefill"))
    self.position += len(tokens)
    return self._logits(tokens[-1])[None]

  def decode(self, token):
    self.calls.append((self.name, "decode"))
    self.position += 1
    return self._logits(token)


def test_running_replies_take_turns_one_model_call_each():
  """A request that arrives while a reply runs is prefilled after that reply's next step, and the
  two then alternate one decode step each: its answer does not wait for the long one to end."""
  calls = []
  made = []

  def make_session():
    # The first slot's prefill waits until the second job waits for its turn.
    gate = (lambda: len(engine_._turns._waiting) == 1) if not made else (lambda: True)
    made.append(_Counting(f"slot{len(made)}", calls, gate))
    return generate.Session(made[-1], stop_ids=set())

  engine_ = engine.Engine(make_session, decode=lambda ids: " ".join(map(str, ids)), slots=2,
                          max_queue=4, log=lambda _: None)

  async def main():
    long = engine.Job([1], 8, generate.Sampling(), [], None, stream=False)
    short = engine.Job([10], 3, generate.Sampling(), [], None, stream=False)
    engine_.submit(long)
    while engine_.status()["running"] == 0:
      await asyncio.sleep(0.001)
    engine_.submit(short)
    return [await job.events.get() for job in (short, long)]

  (short_kind, short_result), (long_kind, long_result) = asyncio.run(main())
  engine_.stop()
  assert (short_kind, long_kind) == ("done", "done")
  assert short_result.text == "11 12 13" and long_result.text == "2 3 4 5 6 7 8 9"
  assert calls[:7] == [("slot0", "prefill"), ("slot1", "prefill"), ("slot0", "decode"),
                       ("slot1", "decode"), ("slot0", "decode"), ("slot1", "decode"),
                       ("slot0", "decode")]
  assert calls[7:] == [("slot0", "decode")] * 4  # the long reply goes on alone


@pytest.mark.parametrize("max_queue", [0, 1])
def test_the_queue_bound_counts_only_requests_that_wait_for_a_slot(max_queue):
  """With 2 slots, 2 requests run at once whatever --max_queue is; it bounds the ones after."""
  release, calls = threading.Event(), []
  engine_ = engine.Engine(
      lambda: generate.Session(_Counting("slot", calls, release.is_set), stop_ids=set()),
      decode=str, slots=2, max_queue=max_queue, log=lambda _: None)

  async def main():
    jobs = [engine.Job([1], 2, generate.Sampling(), [], None, stream=False)
            for _ in range(2 + max_queue)]
    for job in jobs:  # an idle engine: every one is taken, however fast the dispatcher is
      engine_.submit(job)
    with pytest.raises(engine.QueueFull):
      engine_.submit(engine.Job([1], 2, generate.Sampling(), [], None, stream=False))
    assert engine_.status()["queued"] == max_queue
    release.set()
    return [(await job.events.get())[0] for job in jobs]

  assert asyncio.run(main()) == ["done"] * (2 + max_queue)
  engine_.stop()
  assert engine_.status()["rejected"] == 1 and engine_.status()["served"] == 2 + max_queue


def test_the_queue_is_bounded_with_retry_after(server):
  results = []

  def one():
    r = httpx.post(server.v1 + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                   json={"model": "smollm2-tiny", "max_tokens": 300, "temperature": 0,
                         "messages": [{"role": "user", "content": "keep talking"}]}, timeout=120)
    results.append(r)

  threads = [threading.Thread(target=one) for _ in range(10)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  statuses = sorted(r.status_code for r in results)
  assert 429 in statuses and 200 in statuses and set(statuses) == {200, 429}, statuses
  busy = next(r for r in results if r.status_code == 429)
  assert int(busy.headers["retry-after"]) >= 1 and busy.json()["error"]["code"] == "queue_full"
  assert server.health()["max_queued_seen"] <= 3


def test_a_short_load_test(server):
  prompts = [f"Question number {i}?" for i in range(6)]
  report = load.run(server.v1, "smollm2-tiny", prompts, requests=48, concurrency=8,
                    max_tokens=12, api_key=KEY, max_body_bytes=65536, timeout=60)
  print(report.line())
  assert report.ok(), report
  assert report.max_queued_seen <= 3 and report.completion_tokens > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_drain_requests_under_way(chat_checkpoint, signum):
  s = Server(*chat_args(chat_checkpoint))
  with _long_stream_no_key(s) as r:
    lines = r.iter_lines()
    next(lines)
    s.proc.send_signal(signum)
    rest = list(lines)
  assert "data: [DONE]" in rest
  assert s.proc.wait(60) == 0, s.log()[-2000:]
  assert "stopped (1 request" in s.log() and "Traceback" not in s.log()


def _long_stream_no_key(server):
  return httpx.stream("POST", server.v1 + "/chat/completions", json={
      "model": "smollm2-tiny", "max_tokens": 1000, "temperature": 0, "stream": True,
      "messages": [{"role": "user", "content": "go on"}]}, timeout=60)


def test_a_base_model_serves_completions_equal_to_generate():
  # The suites' shared float file (//tests:tinyllama_tiny_float): no conversion here.
  args = ("--model=tinyllama", "--variant=tiny", *testing.TINY_FLAGS, "--quantize=none")
  s = Server(*args)
  try:
    c = openai.OpenAI(base_url=s.v1, api_key="none", max_retries=0)
    done = c.completions.create(model="tinyllama-tiny", prompt="hello there", max_tokens=8,
                                temperature=0)
    generated = testing.run_tool("generate", *args, "--prompt=hello there", "--max_new_tokens=8")
    assert done.choices[0].text == generated.stdout[:-1]
    with pytest.raises(openai.BadRequestError) as raised:
      c.chat.completions.create(model="tinyllama-tiny",
                                messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "unsupported_model" and "completions" in raised.value.message
  finally:
    assert s.stop() == 0


def test_speculative_serving_gives_the_same_greedy_text():
  """--speculative=prompt_lookup on the same file: a prompt that repeats itself gets drafts,
  and the greedy answer is plain generate's token for token; a sampled one is served too."""
  args = ("--model=tinyllama", "--variant=tiny", *testing.TINY_FLAGS, "--quantize=none")
  prompt = "abc abc abc abc abc abc"
  s = Server(*args, "--speculative=prompt_lookup")
  try:
    c = openai.OpenAI(base_url=s.v1, api_key="none", max_retries=0)
    done = c.completions.create(model="tinyllama-tiny", prompt=prompt, max_tokens=24,
                                temperature=0)
    sampled = c.completions.create(model="tinyllama-tiny", prompt=prompt, max_tokens=24,
                                   temperature=1, seed=3)
    assert sampled.usage.completion_tokens == 24 and sampled.choices[0].finish_reason == "length"
    drafts = s.health()["speculative"]
    assert drafts["verify_calls"] > 0 and 0 < drafts["accepted"] <= drafts["drafted"]
  finally:
    assert s.stop() == 0
  generated = testing.run_tool("generate", *args, f"--prompt={prompt}", "--max_new_tokens=24")
  assert done.choices[0].text == generated.stdout[:-1]


@pytest.mark.parametrize("args, message", [
    (("--model=tinyllama", "--port=70000"), "--port must be in 0..65535, got 70000"),
    (("--model=nosuchmodel",), "unknown model"),
    (("--model=tinyllama", "--slots=0"), "--slots must be at least 1"),
    # A trial: NaN and infinity passed the check and ended in a traceback at the server's start.
    (("--model=tinyllama", "--drain_seconds=nan"),
     "--drain_seconds must be a finite number >= 0, got nan"),
    (("--model=tinyllama", "--port=eighty"), "--port takes an integer, got 'eighty'"),
    (("--model=tinyllama", "stray"), "unexpected argument 'stray'"),
    # absl would keep the last: the first is not dropped silently (evaluate takes several).
    (("--model=tinyllama", "--quantize=int8", "--quantize=int4"),
     "--quantize is given 2 times: this tool makes one recipe (only evaluate takes several); "
     "give one"),
    (("--model=tinyllama", "--host=192.0.2.1"), "--host=192.0.2.1 is not an address of this"),
    (("--model=tinyllama", "--host="), "--host is empty: give an address"),
    (("--model=tinyllama", "--nosuchflag"), "Unknown command line flag 'nosuchflag'"),
    # absl's negation is --noX; it suggested the on form for these.
    (("--model=tinyllama", "--no_prefix_reuse"),
     "unknown flag --no_prefix_reuse: the off form of --prefix_reuse is --noprefix_reuse"),
    (("--model=tinyllama", "--no-prefix-reuse"),
     "unknown flag --no-prefix-reuse: the off form of --prefix_reuse is --noprefix_reuse"),
    (("--model=tinyllama", "--speculative=medusa"),
     "unknown --speculative=medusa; choose one of none, prompt_lookup"),
    (("--model=tinyllama", "--variant=tiny", "--speculative=prompt_lookup", "--draft_tokens=9"),
     "--draft_tokens=9 is more than verify_8 scores after the pending token (7)"),
    (("--model=tinyllama", "--draft_tokens=3"),
     "--draft_tokens applies only with --speculative=prompt_lookup"),
    (("--model=tinyllama", "--variant=tiny", "--speculative=prompt_lookup",
      "--verify_lengths=none"),
     "--speculative needs verify_<k> signatures, and tinyllama-tiny would have none"),
])
def test_bad_flags_are_one_line_errors(args, message):
  run = testing.run_tool("serve", *args)
  assert message in testing.one_line_error(run, "serve")


def test_a_taken_port_is_refused_before_any_model_loads():
  """TinyLlama 1.1B has no weights offline: the port's error comes first, at once."""
  with socket.socket() as taken:
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    run = testing.run_tool("serve", "--model=tinyllama", f"--port={port}")
  assert f"cannot listen on 127.0.0.1:{port}" in testing.one_line_error(run, "serve")


def test_a_body_that_stops_halfway_is_refused_after_a_timeout():
  """Found by a trial: a client that sent half a body held its connection for good. The app is
  served on its own here (no model: the body is read before anything else) with a 1 s limit."""
  import socket  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import uvicorn  # pylint: disable=g-import-not-at-top

  served = app_lib.Served(engine=None, model_id="m", aliases=(), tokenizer=None,
                          tokenizer_lock=threading.Lock(), grammars=None, body_seconds=1.0)
  server = uvicorn.Server(uvicorn.Config(app_lib.create_app(served), log_level="warning"))
  listening = socket.socket()
  listening.bind(("127.0.0.1", 0))
  thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
  thread.start()
  try:
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
      time.sleep(0.05)
    with socket.create_connection(listening.getsockname()[:2], timeout=10) as client:
      client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")
      start = time.monotonic()
      reply = b""
      while chunk := client.recv(4096):  # the head and the body may come in separate segments
        reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        if length and len(body) >= int(length.group(1)):
          break
    assert time.monotonic() - start < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), reply
    assert json.loads(body)["error"] == {
        "message": "the request body did not arrive within 1 s (8 bytes came)",
        "type": "invalid_request_error", "param": None, "code": "timeout"}
  finally:
    server.should_exit = True
    thread.join(10)

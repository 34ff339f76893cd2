"""The OpenAI API's requests and errors, read strictly: every parameter the server cannot honour is
refused by name (400, `param` set) rather than ignored.

Refs: https://platform.openai.com/docs/api-reference/chat/create and /completions/create; errors
are `{"error": {"message", "type", "param", "code"}}` with OpenAI's HTTP statuses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

from litezoo.runtime.generate import Sampling

MAX_STOPS = 4  # as OpenAI
# A stop string is checked against the reply at every token: an unbounded one (the body allows
# 1 MiB) let one request hold the model for minutes (a trial: 4 x 250 KB, 258 s for 100 tokens).
MAX_STOP_CHARS = 1000
# Roles the chat template sees; OpenAI's "developer" role is the system message of newer clients.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Accepted and without effect on a single-sequence sampler, as OpenAI documents them.
_NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0, "logprobs": False, "top_logprobs": 0,
            "n": 1, "parallel_tool_calls": None, "tool_choice": "none", "best_of": 1,
            "echo": False}
# The legacy completions API's logprobs is a count of alternatives (0 to 5), not a switch.
_COMPLETION_NEUTRAL = {**_NEUTRAL, "logprobs": 0}
_METADATA = ("user", "metadata", "store", "service_tier")  # bookkeeping fields with no effect


class ApiError(Exception):
  """An answer in OpenAI's error format."""

  def __init__(self, status: int, message: str, param: str | None = None,
               code: str | None = None, kind: str | None = None,
               headers: dict[str, str] | None = None):
    super().__init__(message)
    self.status, self.message, self.param, self.code = status, message, param, code
    # OpenAI's types: every client error but 429 is an invalid request (405 and 413 included).
    self.kind = kind or ("rate_limit_error" if status == 429 else
                         "invalid_request_error" if 400 <= status < 500 else "server_error")
    self.headers = headers or {}

  def body(self) -> dict:
    return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                      "code": self.code}}


def bad(param: str | None, message: str, code: str | None = None) -> ApiError:
  return ApiError(400, message, param=param, code=code or "invalid_value")


@dataclasses.dataclass
class Request:
  """A validated generation request, chat or completion."""

  model: str
  endpoint: str  # "chat" or "completion"
  messages: list[dict] | None  # chat: [{"role", "content": str}]
  prompt: str | None  # completion
  max_tokens: int | None  # None: until a stop or the KV cache is full
  sampling: Sampling
  stop: list[str]
  stream: bool
  include_usage: bool
  response_format: dict | None
  max_tokens_param: str | None = None  # which parameter set max_tokens (None: the default)


MAX_DEPTH = 128  # JSON nesting; requests (JSON schemas included) stay far below it
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[][{}]")


def _too_deep(raw: bytes) -> bool:
  """Whether `raw` nests arrays and objects deeper than MAX_DEPTH (outside its strings). The
  converter's import raises Python's recursion limit to 100,000, so json.loads would recurse on
  the C stack until the process crashes rather than raise RecursionError."""
  if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
    return False
  depth = 0
  for bracket in _BRACKETS.finditer(_STRINGS.sub(b"", raw)):
    depth += 1 if bracket.group() in (b"[", b"{") else -1
    if depth > MAX_DEPTH:
      return True
  return False


def parse_json(raw: bytes) -> dict:
  """The request's JSON object; ApiError 400 for anything else. Raises before parsing a body
  that nests deeper than MAX_DEPTH."""
  if _too_deep(raw):
    raise ApiError(400, f"the request body nests too deeply to read (more than {MAX_DEPTH} "
                   "levels)", code="invalid_json")
  try:
    body = json.loads(raw)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ApiError(400, f"the request body is not valid JSON ({e})", code="invalid_json") from e
  except ValueError as e:  # an integer of more digits than Python converts (4,300)
    raise ApiError(400, f"the request body has a number too long to read ({e})",
                   code="invalid_json") from e
  except RecursionError as e:
    raise ApiError(400, "the request body nests too deeply to read", code="invalid_json") from e
  if not isinstance(body, dict):
    raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
  return body


def _number(body: dict, name: str, low: float, high: float, default: float) -> float:
  value = body.get(name)
  if value is None:
    return default
  try:
    finite = not isinstance(value, bool) and math.isfinite(value)
  except (TypeError, OverflowError):  # not a number, or an integer beyond any float
    finite = False
  if not finite:
    raise bad(name, f"{name} must be a number, got {_shown(value)}")
  if not low <= value <= high:
    raise bad(name, f"{name} must be between {low} and {high}, got {value}")
  return float(value)


def _integer(body: dict, name: str, low: int, default: int | None) -> int | None:
  value = body.get(name)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, int):
    raise bad(name, f"{name} must be an integer, got {_shown(value)}")
  if value < low:
    raise bad(name, f"{name} must be at least {low}, got {value}")
  return value


def _unicode(text: str, where: str) -> str:
  """`text` if it encodes as UTF-8 (JSON's \\ud800 escapes can make lone surrogates)."""
  try:
    text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise bad(where, f"{where} is not valid Unicode text (a lone surrogate at character "
              f"{e.start})") from e
  return text


def _stop(body: dict) -> list[str]:
  stop = body.get("stop")
  if stop is None:
    return []
  stops = [stop] if isinstance(stop, str) else stop
  if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
    raise bad("stop", "stop must be a string or a list of strings")
  if len(stops) > MAX_STOPS:
    raise bad("stop", f"stop takes at most {MAX_STOPS} sequences, got {len(stops)}")
  if any(not s for s in stops):
    raise bad("stop", "a stop sequence must not be empty")
  if any(len(s) > MAX_STOP_CHARS for s in stops):
    longest = max(map(len, stops))
    raise bad("stop", f"a stop sequence takes at most {MAX_STOP_CHARS} characters, got {longest}")
  return [_unicode(s, "stop") for s in stops]


def _content(content: Any, where: str) -> str:
  """A message's text: a string, or a list of text parts (any other part is refused)."""
  if isinstance(content, str):
    return _unicode(content, f"{where}.content")
  if isinstance(content, list):
    texts = []
    for j, part in enumerate(content):
      kind = part.get("type") if isinstance(part, dict) else None
      if kind != "text" or not isinstance(part.get("text"), str):
        what = kind or type(part).__name__
        raise bad(f"{where}.content[{j}]", f"{where}.content[{j}] is a part of type {what}; "
                  "this model takes text only", code="unsupported_content")
      texts.append(_unicode(part["text"], f"{where}.content[{j}].text"))
    return "".join(texts)
  raise bad(f"{where}.content", f"{where}.content must be a string or a list of text parts")


def _messages(body: dict) -> list[dict]:
  messages = body.get("messages")
  if not isinstance(messages, list) or not messages:
    raise bad("messages", "messages must be a non-empty list of {role, content} objects",
              code="missing_required_parameter" if messages is None else None)
  out = []
  for i, m in enumerate(messages):
    where = f"messages[{i}]"
    if not isinstance(m, dict):
      raise bad(where, f"{where} must be an object with role and content")
    role = m.get("role")
    if role is None:
      raise bad(f"{where}.role", f"{where}.role is missing; roles: {', '.join(ROLES)}",
                code="missing_required_parameter")
    if not isinstance(role, str) or role not in ROLES:
      raise bad(f"{where}.role", f"{where}.role {_shown(role)} is not supported; roles: "
                f"{', '.join(ROLES)}", code="unsupported_role")
    for key in ("tool_calls", "function_call"):
      if m.get(key):
        raise bad(f"{where}.{key}", f"{where}.{key}: tool calls are not supported")
    # A field left empty does not apply (the openai client echoes an assistant reply back with
    # refusal=None and the like); one with a value the chat template has no place for is refused.
    extra = sorted(k for k, v in m.items() if k not in ("role", "content") and v not in
                   (None, "", [], {}))
    if extra:
      raise bad(f"{where}.{extra[0]}", f"{where}.{extra[0]} is not supported: this server "
                "passes a message's role and content to the chat template, nothing else",
                code="unsupported_parameter")
    if m.get("content") is None:
      raise bad(f"{where}.content", f"{where}.content is missing")
    out.append({"role": ROLES[role], "content": _content(m["content"], where)})
  return out


def _response_format(body: dict) -> dict | None:
  fmt = body.get("response_format")
  if fmt is None:
    return None
  if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
    raise bad("response_format", "response_format must be an object with a type")
  kind = fmt["type"]
  if kind == "text":
    return None
  if kind == "json_object":
    return {"type": "json_schema", "schema": {"type": "object"}}
  if kind == "json_schema":
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
      raise bad("response_format.json_schema", "response_format.json_schema must be an object "
                "with a schema object")
    return {"type": "json_schema", "schema": spec.get("schema") or {"type": "object"}}
  # Extensions, as LiteRT-LM's constrained decoding offers: a regular expression or a grammar
  # (Lark or GBNF, in llguidance's dialect).
  if kind in ("regex", "grammar"):
    if not isinstance(fmt.get(kind), str) or not fmt[kind]:
      raise bad(f"response_format.{kind}", f"response_format of type {kind} needs a non-empty "
                f"{kind!r} string")
    return {"type": kind, kind: fmt[kind]}
  raise bad("response_format.type", f"response_format.type {kind!r} is not supported; types: "
            "text, json_object, json_schema, regex, grammar")


_CHAT_KEYS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
              "seed", "stop", "stream", "stream_options", "n", "response_format", "top_k",
              "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "tools",
              "tool_choice", "parallel_tool_calls", *_METADATA}
_COMPLETION_KEYS = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop",
                    "stream", "stream_options", "n", "top_k", "presence_penalty",
                    "frequency_penalty", "logprobs", "echo", "best_of", "suffix", *_METADATA}


def _shown(value: Any) -> str:
  """A request's value as JSON spells it (true, null, "x"), cut short."""
  try:
    return json.dumps(value)[:40]
  except (TypeError, ValueError):  # a huge integer
    return str(value)[:40]


def _bookkeeping(body: dict) -> None:
  """OpenAI's fields that change nothing here must still be well-formed; store=true asks for
  something this server does not do (keep the reply for OpenAI's dashboards)."""
  for name, kinds, what in (("user", str, "a string"), ("service_tier", str, "a string"),
                            ("metadata", dict, "an object of strings"),
                            ("store", bool, "true or false")):
    value = body.get(name)
    if value is not None and (not isinstance(value, kinds) or (
        name == "metadata" and not all(isinstance(v, str) for v in value.values()))):
      raise bad(name, f"{name} must be {what}, got {_shown(value)}")
  if body.get("store"):
    raise bad("store", "store=true is not supported: this server keeps no replies",
              code="unsupported_parameter")


def _common(body: dict, keys: set[str], neutral_values: dict = _NEUTRAL) -> None:
  unknown = sorted(set(body) - keys)
  if unknown:
    chat_only = "; it applies to /v1/chat/completions" if unknown[0] in _CHAT_KEYS else ""
    raise bad(unknown[0], f"unrecognized request argument: {unknown[0]}{chat_only}",
              code="unknown_parameter")
  if not body.get("model"):
    raise bad("model", "model must be given (GET /v1/models lists it)",
              code="missing_required_parameter")
  if not isinstance(body["model"], str):
    raise bad("model", f"model must be a string, got {json.dumps(body['model'])[:40]}")
  for name, neutral in neutral_values.items():
    value = body.get(name)
    wrong_type = isinstance(value, bool) != isinstance(neutral, bool)  # `true` == 1 in Python
    if value is not None and (value != neutral or wrong_type):
      raise bad(name, f"{name}={_shown(body[name])} is not supported by this server (only "
                f"{json.dumps(neutral)})", code="unsupported_parameter")
  _bookkeeping(body)
  if body.get("tools"):
    raise bad("tools", "tools (function calling) are not supported by this server",
              code="unsupported_parameter")
  if body.get("suffix"):
    raise bad("suffix", "suffix is not supported by this server", code="unsupported_parameter")


def _sampling(body: dict) -> Sampling:
  temperature = _number(body, "temperature", 0, 2, 1.0)
  top_p = _number(body, "top_p", 0, 1, 1.0)
  if top_p == 0:
    raise bad("top_p", "top_p must be above 0")
  top_k = _integer(body, "top_k", 0, 0)
  seed = _integer(body, "seed", -2**63, None)
  # As tools/generate refuses --top_p with --temperature=0: an option that cannot apply is an
  # error, not ignored. The neutral values clients send by default (top_p 1, top_k 0) are fine.
  if temperature == 0:
    for name, given in (("top_p", top_p != 1.0), ("top_k", top_k != 0)):
      if given:
        raise bad(name, f"{name} applies only when sampling; with temperature 0 decoding is "
                  f"greedy: leave {name} out or set temperature above 0")
  # OpenAI samples unseeded without a seed; a fresh seed per request does the same.
  if seed is None:
    import secrets  # pylint: disable=g-import-not-at-top
    seed = secrets.randbits(63)
  return Sampling(temperature, top_k, top_p, seed % 2**63)


def _stream(body: dict) -> tuple[bool, bool]:
  stream = body.get("stream")
  if stream is not None and not isinstance(stream, bool):
    raise bad("stream", f"stream must be true or false, got {stream!r}")
  options = body.get("stream_options")
  if options is None:
    return bool(stream), False
  if not stream:
    raise bad("stream_options", "stream_options applies only with stream=true")
  if not isinstance(options, dict):
    raise bad("stream_options", "stream_options must be an object such as "
              '{"include_usage": true}')
  for key, value in options.items():
    if key not in ("include_usage", "include_obfuscation"):
      raise bad(f"stream_options.{key}", f"stream_options.{key} is not supported; "
                "stream_options takes include_usage", code="unsupported_parameter")
    if value is not None and not isinstance(value, bool):
      raise bad(f"stream_options.{key}", f"stream_options.{key} must be true or false, got "
                f"{json.dumps(value)[:40]}")
  # OpenAI pads streamed chunks against side channels only on request; nothing to pad here.
  if options.get("include_obfuscation"):
    raise bad("stream_options.include_obfuscation", "stream_options.include_obfuscation is not "
              "supported: leave it out or set it to false", code="unsupported_parameter")
  return True, bool(options.get("include_usage"))


def chat_request(body: dict) -> Request:
  """Raises ApiError naming the first parameter it cannot honour."""
  _common(body, _CHAT_KEYS)
  messages = _messages(body)
  given = {name: value for name in ("max_completion_tokens", "max_tokens")
           if (value := _integer(body, name, 1, None)) is not None}
  if len(set(given.values())) > 1:
    raise bad("max_tokens", f"max_completion_tokens={given['max_completion_tokens']} and "
              f"max_tokens={given['max_tokens']} disagree: give one (max_tokens is the older name)")
  param = next(iter(given), None)
  max_tokens = given.get(param)
  sampling = _sampling(body)
  stream, include_usage = _stream(body)
  stops, response_format = _stop(body), _response_format(body)
  if stops and response_format is not None:
    # Every constrained reply that ends with finish_reason "stop" parses: a stop string would
    # end one early (a JSON object at its first "}") and break that promise.
    raise bad("stop", "stop cannot apply with response_format: a stop sequence would cut the "
              "constrained reply short of its format (JSON at its first '}'); drop stop, the "
              "format ends the reply itself")
  return Request(body["model"], "chat", messages, None, max_tokens, sampling, stops,
                 stream, include_usage, response_format, param)


def completion_request(body: dict) -> Request:
  _common(body, _COMPLETION_KEYS, _COMPLETION_NEUTRAL)
  prompt = body.get("prompt")
  if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
    prompt = prompt[0]
  if not isinstance(prompt, str):
    raise bad("prompt", "prompt must be a string (one prompt per request)",
              code="missing_required_parameter" if prompt is None else None)
  if not prompt:
    raise bad("prompt", "prompt must not be empty")
  _unicode(prompt, "prompt")
  max_tokens = _integer(body, "max_tokens", 1, 16)  # OpenAI's default for completions
  sampling = _sampling(body)
  stream, include_usage = _stream(body)
  return Request(body["model"], "completion", None, prompt, max_tokens, sampling, _stop(body),
                 stream, include_usage, None,
                 "max_tokens" if body.get("max_tokens") is not None else None)

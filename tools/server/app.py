"""The OpenAI-compatible HTTP API (FastAPI on uvicorn, SSE through sse-starlette) in front of one
Engine. Every error reaches the client in OpenAI's format; none carries a traceback.

  GET  /health                  liveness, queue depth and counters (no API key needed)
  GET  /v1/models[/{id}]        the one model served
  POST /v1/chat/completions     through the model's chat template; stream or not
  POST /v1/completions          plain text completion (base models, or raw on chat models)
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import threading
import time
import traceback
import uuid
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from litezoo.runtime.tokenizer import TokenizerError
from litezoo.tools.server import protocol
from litezoo.tools.server.engine import Cancelled, Engine, Job, QueueFull, Result
from litezoo.tools.server.grammar import GrammarLimitError
from litezoo.tools.server.protocol import ApiError


@dataclasses.dataclass
class Served:
  """What the app serves: the engine, its model's names and tokenizer, the limits."""

  engine: Engine
  model_id: str  # e.g. "smollm2-135m"
  aliases: tuple[str, ...]  # other names a request may use (the model without its variant)
  tokenizer: object  # runtime.tokenizer.HFTokenizer
  # Held around every use of the tokenizer: the engine's worker decodes with it while handlers
  # encode (a Rust fast tokenizer refuses concurrent use with "Already borrowed").
  tokenizer_lock: threading.Lock
  grammars: object | None  # grammar.Grammars
  api_key: str | None = None
  # Host header names the server answers to (None: any). Bound to loopback, only loopback
  # names: a web page whose own name resolves to 127.0.0.1 (DNS rebinding) is refused.
  allowed_hosts: frozenset[str] | None = None
  max_body_bytes: int = 1 << 20
  # A body that has not arrived whole by then is refused (408): a client that sends half of one
  # and stops would otherwise hold its connection, and a slot in the event loop, for ever.
  body_seconds: float = 30.0
  drain_seconds: float = 30.0
  log: Callable[[str], None] = print
  created: int = dataclasses.field(default_factory=lambda: int(time.time()))


LOOPBACK_HOSTS = frozenset(("localhost", "127.0.0.1", "::1"))


def host_name(header: str) -> str:
  """The name in a Host header, without its port: "[::1]:8000" -> "::1", "Localhost" ->
  "localhost"."""
  header = header.strip().lower()
  if header.startswith("["):  # an IPv6 address, maybe with a port after "]"
    return header[1:].partition("]")[0]
  return header.rpartition(":")[0] if header.count(":") == 1 else header


def create_app(served: Served) -> FastAPI:
  # No redirect from /v1/models/ to /v1/models: a client that follows it would POST twice.
  app = FastAPI(title="litezoo", docs_url=None, redoc_url=None, openapi_url=None,
                redirect_slashes=False)
  engine = served.engine

  @app.middleware("http")
  async def _host(request: Request, call_next):
    if served.allowed_hosts is not None:
      host = host_name(request.headers.get("host", ""))
      if host not in served.allowed_hosts:
        return JSONResponse(ApiError(
            400, f"the Host header names {host or 'nothing'!r}, not this server (it answers to "
            f"{', '.join(sorted(served.allowed_hosts))}: it listens on loopback)",
            code="invalid_host").body(), status_code=400)
    return await call_next(request)

  @app.exception_handler(ApiError)
  async def _api_error(_, e: ApiError):
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

  @app.exception_handler(StarletteHTTPException)
  async def _http_error(_, e: StarletteHTTPException):
    message = {404: "no such endpoint", 405: "method not allowed"}.get(e.status_code,
                                                                       str(e.detail))
    return JSONResponse(ApiError(e.status_code, message, code=None).body(),
                        status_code=e.status_code, headers=getattr(e, "headers", None))

  @app.exception_handler(Exception)
  async def _bug(_, e: Exception):
    served.log(f"serve: internal error:\n{''.join(traceback.format_exception(e)).rstrip()}")
    return JSONResponse(ApiError(500, "internal server error (the server log has the details)",
                                 code="internal_error").body(), status_code=500)

  def _authorize(request: Request) -> None:
    if served.api_key is None:
      return
    given = request.headers.get("authorization", "")
    scheme, _, key = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                            served.api_key.encode()):
      raise ApiError(401, "incorrect API key provided" if given else
                     "no API key provided (Authorization: Bearer KEY)", code="invalid_api_key")

  def _model(name: str) -> dict:
    if name != served.model_id and name not in served.aliases:
      raise ApiError(404, f"the model {name!r} does not exist; this server serves "
                     f"{served.model_id!r}", param="model", code="model_not_found")
    return {"id": served.model_id, "object": "model", "created": served.created,
            "owned_by": "litezoo"}

  async def _body(request: Request) -> bytes:
    limit = served.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
      raise ApiError(413, f"the request body has {length} bytes; the limit is {limit}",
                     code="request_too_large")
    chunks, size = [], 0
    try:
      async with asyncio.timeout(served.body_seconds):
        async for chunk in request.stream():
          size += len(chunk)
          if size > limit:
            raise ApiError(413, f"the request body is over the limit of {limit} bytes",
                           code="request_too_large")
          chunks.append(chunk)
    except ClientDisconnect as e:  # it left halfway through its body: nobody to answer
      raise ApiError(499, "the client closed the request", code="cancelled") from e
    except TimeoutError as e:
      raise ApiError(408, f"the request body did not arrive within {served.body_seconds:g} s "
                     f"({size} bytes came)", code="timeout") from e
    return b"".join(chunks)

  @app.api_route("/health", methods=["GET", "HEAD"])  # some health checkers send HEAD
  async def health():
    return {"status": "ok", "model": served.model_id, **engine.status()}

  @app.get("/v1/models")
  async def models(request: Request):
    _authorize(request)
    return {"object": "list", "data": [_model(served.model_id)]}

  @app.get("/v1/models/{name:path}")
  async def model(name: str, request: Request):
    _authorize(request)
    return _model(name)

  def _context(req: protocol.Request) -> list[int]:
    tok = served.tokenizer
    with served.tokenizer_lock:
      if req.endpoint == "chat":
        if tok.chat_template is None:
          raise protocol.bad("messages", f"{served.model_id} has no chat template (a base "
                             "model): use /v1/completions", code="unsupported_model")
        try:
          context = tok.chat(req.messages)
        except TokenizerError as e:
          raise protocol.bad("messages", str(e)) from e
      else:
        context = tok.encode(req.prompt)
    capacity = engine.capacity
    what = "the messages take" if req.endpoint == "chat" else "the prompt takes"
    if len(context) > capacity:  # a full cache still gives one token (engine.room)
      raise ApiError(400, f"this model's context (KV cache) holds {capacity} tokens, but {what} "
                     f"{len(context)}: shorten {'them' if req.endpoint == 'chat' else 'it'}",
                     param="messages" if req.endpoint == "chat" else "prompt",
                     code="context_length_exceeded")
    # A limit the client set that cannot be reached is refused, as OpenAI does; the default
    # (completions: 16) stops at the cache's end. The reply's last token needs no room in the
    # cache, so the bound is engine.room's, one more than the cache has left.
    name = req.max_tokens_param
    room = engine.room(len(context))
    if name is not None and req.max_tokens > room:
      raise ApiError(400, f"this model's context (KV cache) holds {capacity} tokens, but {what} "
                     f"{len(context)} and {name} asks for {req.max_tokens} more: lower {name} "
                     f"to at most {room}"
                     + (" (or leave it out to fill the context)" if req.endpoint == "chat" else ""),
                     param=name, code="context_length_exceeded")
    return context

  async def _generate(request: Request, parse):
    _authorize(request)
    # Only JSON: a form or text/plain POST is a "simple" request a web page may send to this
    # port without the browser asking first (CORS), so one is refused before it is read.
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
      raise ApiError(415, f"the request body must be JSON: send Content-Type: application/json "
                     f"(got {kind or 'none'})", code="unsupported_media_type")
    body = await _body(request)
    # Reading a big body and rendering and tokenizing its messages take a while: in a thread,
    # so the event loop goes on streaming the running replies (and answering /health).
    req = await asyncio.to_thread(lambda: parse(protocol.parse_json(body)))
    _model(req.model)
    context = await asyncio.to_thread(_context, req)
    grammar = None
    if req.response_format is not None:
      if served.grammars is None:
        raise protocol.bad("response_format", "constrained decoding is not available")
      grammar = await asyncio.to_thread(served.grammars.compile, req.response_format)
    job = Job(context, req.max_tokens, req.sampling, req.stop, grammar, req.stream)
    try:
      engine.submit(job)
    except QueueFull as e:
      raise ApiError(429, f"the server is busy: its queue of {engine.max_queue} waiting "
                     f"requests is full (--max_queue); retry after {e.retry_after} s",
                     code="queue_full", headers={"Retry-After": str(e.retry_after)}) from e
    ident = ("chatcmpl-" if req.endpoint == "chat" else "cmpl-") + uuid.uuid4().hex
    if req.stream:
      return EventSourceResponse(_stream(req, job, ident), ping=15, sep="\n",
                                 shutdown_grace_period=served.drain_seconds,
                                 headers={"Cache-Control": "no-cache"})
    result = await _wait(request, job)
    return _response(req, ident, result)

  async def _wait(request: Request, job: Job) -> Result:
    """The job's result; cancels it if the client disconnects first."""
    async def disconnected():
      while (await request.receive())["type"] != "http.disconnect":
        pass
    watch = asyncio.ensure_future(disconnected())
    get = asyncio.ensure_future(job.events.get())
    try:
      done, _ = await asyncio.wait({watch, get}, return_when=asyncio.FIRST_COMPLETED)
      if get not in done:
        engine.cancel(job)
        raise ApiError(499, "the client closed the request", code="cancelled")
      kind, value = get.result()
    finally:
      watch.cancel()
      get.cancel()
      engine.cancel(job)  # no-op once finished
    if kind == "error":
      raise value if isinstance(value, ApiError) else _generation_error(value)
    return value

  def _usage(r: Result) -> dict:
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cached_tokens}}

  def _response(req, ident: str, r: Result) -> dict:
    base = {"id": ident, "created": int(time.time()), "model": served.model_id,
            "system_fingerprint": None}
    if req.endpoint == "chat":
      choice = {"index": 0, "message": {"role": "assistant", "content": r.text, "refusal": None},
                "logprobs": None, "finish_reason": r.finish_reason}
      return {**base, "object": "chat.completion", "choices": [choice], "usage": _usage(r)}
    choice = {"index": 0, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason}
    return {**base, "object": "text_completion", "choices": [choice], "usage": _usage(r)}

  async def _stream(req, job: Job, ident: str):
    chat = req.endpoint == "chat"
    base = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": served.model_id, "system_fingerprint": None}
    usage_field = {"usage": None} if req.include_usage else {}

    def chunk(content: str | None, finish: str | None, role: bool = False) -> str:
      if chat:
        delta = {"role": "assistant", "content": ""} if role else (
            {"content": content} if content is not None else {})
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
      else:
        choice = {"index": 0, "text": content or "", "logprobs": None, "finish_reason": finish}
      return json.dumps({**base, "choices": [choice], **usage_field})

    try:
      if chat:
        yield {"data": chunk(None, None, role=True)}
      while True:
        kind, value = await job.events.get()
        if kind == "text":
          yield {"data": chunk(value, None)}
        elif kind == "done":
          yield {"data": chunk(None, value.finish_reason)}
          if req.include_usage:
            yield {"data": json.dumps({**base, "choices": [], "usage": _usage(value)})}
          break
        else:
          error = _generation_error(value)
          yield {"data": json.dumps(error.body())}
          break
      yield {"data": "[DONE]"}
    finally:
      engine.cancel(job)  # the client went away (or we are done: then a no-op)

  def _generation_error(e: Exception) -> ApiError:
    if isinstance(e, Cancelled):
      return ApiError(499, "the request was cancelled", code="cancelled")
    if isinstance(e, GrammarLimitError):
      return ApiError(400, f"response_format is past the grammar engine's limits ({e}): "
                      "simplify it", param="response_format")
    return ApiError(500, "generation failed (the server log has the details)",
                    code="internal_error")

  @app.post("/v1/chat/completions")
  async def chat_completions(request: Request):
    return await _generate(request, protocol.chat_request)

  @app.post("/v1/completions")
  async def completions(request: Request):
    return await _generate(request, protocol.completion_request)

  return app

"""The OpenAI-compatible server behind tools/serve.py: protocol (requests and errors), engine
(queue, worker, KV-cache slots), grammar (constrained decoding), app (the HTTP API)."""

"""The OpenAI-compatible server behind tools/serve.py: protocol (requests and errors), engine
(queue, dispatcher, KV-cache slots taking turns on the model), grammar (constrained decoding),
app (the HTTP API)."""

"""attnkit.serve: an HTTP server for one model with OpenAI's completions and embeddings API."""

from attnkit.serve.server import ModelServer, RequestError, make_server

__all__ = ["ModelServer", "RequestError", "make_server"]

"""``resnet serve``: an HTTP prediction service with dynamic batching (Starlette + uvicorn).

``engine`` loads a checkpoint and builds the scoring engine, ``batcher`` groups concurrent requests
into batches, ``limits`` holds every bound on what a client may send, ``metrics`` the Prometheus
counters, ``app`` the routes and the server. Needs the ``serve`` extra (``pip install .[serve]``).
"""

from __future__ import annotations

from resnet.serve.limits import Limits

__all__ = ["Limits", "ServeSettings", "serve"]


def __getattr__(name: str):  # the web stack is imported only when a server is wanted
    if name in ("ServeSettings", "serve"):
        from resnet.serve import app

        return getattr(app, name)
    raise AttributeError(name)

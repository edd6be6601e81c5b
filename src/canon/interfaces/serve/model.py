"""The loaded model: the declared handler, imported once, checked once, then called.

States: ``loading`` → ``ready`` (files verified, handler imported, the self-check prediction
answered) or ``failed`` (with the reason ``/readyz`` shows). The self-check input is the
handler module's ``example()`` (or ``EXAMPLE``) — the handler owns its input format, so it
is the one that knows a valid request; a module without one is ready once imported.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from canon.errors import CanonError, ServeError
from canon.interfaces.serve.bundle import Bundle, verify

Handler = Callable[[Any], Any]


class RejectedInput(Exception):
    """The handler refused an input (ValueError, TypeError, KeyError, IndexError): a 422."""


class ServedModel:
    """One model behind one server. Thread-safe: handlers run on worker threads."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.state = "loading"
        self.reason = "loading the model"
        self.verified: dict[str, str] = {}
        self.self_check: str = "pending"
        self.loaded_at: float | None = None
        self._handler: Handler | None = None
        self._ready = threading.Event()

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def load(self) -> None:
        """Verify, import, self-check. Never raises: a failure is a state with a reason."""
        try:
            self.verified = verify(self.bundle)
            handler, example = self._import()
            if example is not None:
                answer = self.predict(example, handler=handler)
                json.dumps(answer, allow_nan=False)
                self.self_check = "passed"
            else:
                self.self_check = "none declared (the handler module has no example())"
            self._handler = handler
            self.loaded_at = time.time()
            self.state, self.reason = "ready", "model loaded and self-check passed"
        except CanonError as exc:
            self.state, self.reason = "failed", exc.message
        except RejectedInput as exc:
            self.state, self.reason = "failed", f"self-check prediction rejected: {exc}"
        except Exception as exc:  # the handler's own code: report, never crash the server
            self.state, self.reason = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout) and self.ready

    def _import(self) -> tuple[Handler, Any]:
        module_name, _, function = self.bundle.handler.partition(":")
        for entry in reversed(self.bundle.pythonpath):
            if str(entry) not in sys.path:
                sys.path.insert(0, str(entry))
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise ServeError(
                f"cannot import {module_name} for handler {self.bundle.handler}: "
                f"{type(exc).__name__}: {exc}",
                hint="is the module on the image's PYTHONPATH (artifacts.base.pythonpath)?",
            ) from exc
        handler = getattr(module, function, None)
        if not callable(handler):
            raise ServeError(f"{module_name} has no function {function!r}")
        example: Any = None
        if callable(getattr(module, "example", None)):
            example = module.example()
        elif hasattr(module, "EXAMPLE"):
            example = module.EXAMPLE
        return handler, example

    def predict(self, inputs: Any, *, handler: Handler | None = None) -> Any:
        """The handler's answer; RejectedInput for a bad input, anything else propagates."""
        call = handler or self._handler
        if call is None:
            raise ServeError("the model is not loaded", hint="wait for /readyz")
        try:
            return call(inputs)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise RejectedInput(f"{type(exc).__name__}: {exc}") from exc

    def info(self) -> dict[str, str]:
        """Labels of the ``canon_model_info`` metric."""
        prov = self.bundle.provenance
        return {
            "artifact": str(prov.get("artifact", "")),
            "commit": str(prov.get("commit", "")),
            "image": self.bundle.image_digest or "",
            "handler": self.bundle.handler,
            "source": self.bundle.source,
        }

"""The controller process: the reconcile loop on a thread, and its HTTP face
(``/hooks/git``, ``/healthz``, ``/readyz``, ``/status``, ``/metrics``)."""

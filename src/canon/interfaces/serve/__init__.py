"""The model server (``canon serve``): a thin ASGI shell around the model's own handler.

bundle.py   what a server runs: code + model files + provenance (an extracted image or
            the workspace), verified, pickle refused unless trusted
model.py    the loaded model: handler import, self-check, ready state
requests.py JSON request limits and shapes -> typed 4xx
metrics.py  Prometheus text exposition, hand-rolled
app.py      the Starlette routes: /predict /healthz /readyz /provenance /metrics
"""

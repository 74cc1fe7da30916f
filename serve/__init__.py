"""Kiln's prediction service: `python -m serve` or `kiln serve` (FastAPI + ONNX Runtime).

`serve.app.create_app` builds the app for the registry's champion; `serve.schemas` holds the
request/response schemas per task type; `serve.backends` loads hash-checked ONNX or safetensors
files; `serve.predict` is `kiln predict FILE...`. Importing this package never imports torch.
"""

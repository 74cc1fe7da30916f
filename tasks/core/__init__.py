"""Kiln's task-agnostic core: params, io, the training engine, checkpoints, the model registry,
ONNX helpers, validation and cleaning building blocks. Nothing here imports a task type."""

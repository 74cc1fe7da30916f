"""The task types other than image classification, one module per task type.

`tasks/task_types.py` hands each stage over to `tasks.kinds.<task type>` (text_classification,
forecasting, text_generation), which defines `clean_stage`, `train_stage`, `evaluate_stage`,
`export_stage`, `test_metrics` and `torch_runner`; the other modules here are their helpers
(text cleaning and tokenizers, the MiniLM encoder, series windows, reports and ONNX export).
Kept in one package so that dvc.yaml names them as one dependency of the stages that dispatch to
them (a shorter dvc.lock is also a faster one: DVC re-parses it on every status and commit).
"""

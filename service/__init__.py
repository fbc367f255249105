"""prefsum service: the Litestar app, the ONNX Runtime inference engine, eval jobs and labeling (later issues)."""

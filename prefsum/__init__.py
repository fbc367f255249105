"""prefsum: train summarizers from human feedback (SFT -> reward model -> PPO), export them to ONNX, serve them."""

__version__ = "0.1.0"

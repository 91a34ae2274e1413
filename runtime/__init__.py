"""Hybrid ops (shift, adder) as QONNX custom ops, PyTorch/Brevitas modules, network
building, lowering to standard ONNX, and executors for the golden checks."""

"""nashc: a compiler that searches and builds hardware-optimised quantized neural
networks (multiplication-reduced hybrids included) for FPGAs, on QONNX and FINN."""

__version__ = "0.1.0"

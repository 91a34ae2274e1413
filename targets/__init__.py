"""FPGA boards, resource budgets, lowering through FINN and estimate reports."""

# registers nashc's hybrid hardware layers (ShiftMVAU/AdderMVAU[_hls]) in FINN's domains
from nashc.targets import hw_layers as _hw_layers  # noqa: E402,F401

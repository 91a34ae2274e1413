"""FPGA boards, resource budgets, lowering through FINN and estimate reports."""

"""RTL for nashc's hybrid hardware layers: SystemVerilog generation (`generate`),
Verilator simulation (`sim`)."""

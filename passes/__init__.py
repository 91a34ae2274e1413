"""qonnx `Transformation`s: hybrid swaps, folding, bit widths, scoring and search."""

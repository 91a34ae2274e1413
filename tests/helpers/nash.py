"""Small `.nash` sources shared by the pipeline tests."""

from __future__ import annotations

__all__ = ["loaded_net", "tiny_fc"]

_TINY_FC = """
network tiny {
  input 1x8x8 uint8
  weights int4
  activations uint4
  fc fc0 out 16
  fc head out 10 weights int8
}
space {
  wbits fc0 in {2, 4}
  abits fc0 in {2, 4}
  fix head
}
hardware {
  target u250
  clock 200 MHz
  budget lut LUT, bram 1%, uram 0, dsp 1%
}
search {
  strategy random samples 4
  keep pareto 4
  seed 0
}
"""


def tiny_fc(lut: str = "1%", train: bool = False) -> str:
    """A 16-unit fc network on 8x8 inputs with a 16-point space and a small u250 budget
    (``lut``: its LUT share or count); ``train`` adds a 1-epoch digits train section."""
    text = _TINY_FC.replace("lut LUT", f"lut {lut}")
    if train:
        text += "train { dataset digits; epochs 1; batch 64; lr 0.01 }\n"
    return text


def loaded_net(model: str, space: str = "wbits * in {2, 4}", budget: str | None = None,
               keep: int = 1, name: str = "net") -> str:
    """A `.nash` file searching rewrites of the model at `model` (as written in the file):
    the `space` section's lines, a u250 at 200 MHz (``budget``: its budget line, none by
    default), metric fidelity on 4 images, 2 random samples, `keep` Pareto points."""
    budget_line = f"\n  budget {budget}" if budget else ""
    return (f'network {name} from "{model}"\nspace {{\n  {space}\n}}\n'
            f"hardware {{\n  target u250\n  clock 200 MHz{budget_line}\n}}\n"
            "search {\n  metric fidelity batch 4\n  strategy random samples 2\n"
            f"  keep pareto {keep}\n  seed 0\n}}\n")

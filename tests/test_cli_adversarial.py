"""Adversarial inputs to every command (issue 12): an error message and exit code 2 (1
for a failed golden check), never a traceback. Small inputs; each runs in-process
through click's CliRunner, the way the `nashc` entry point runs it."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from nashc.cli import cli

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "tfc_digits_w4a4.onnx"
NET = "network n {\n  input 1x8x8 uint8\n%s\n}\n"


def runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()


def invoke(args: list[str]):  # type: ignore[no-untyped-def]
    result = runner().invoke(cli, args)
    err = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in err and "Traceback" not in result.stdout
    assert "internal error" not in err, err
    return result.exit_code, err


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken variants of a small QONNX model, as users produce them."""
    d = tmp_path_factory.mktemp("bad_models")
    good = onnx.load(str(MODEL))
    out: dict[str, Path] = {}

    def save(name: str, model: onnx.ModelProto) -> None:
        out[name] = d / f"{name}.onnx"
        onnx.save(model, str(out[name]))

    m = copy.deepcopy(good)
    big = max(m.graph.initializer, key=lambda i: len(i.raw_data))
    big.raw_data = big.raw_data[: len(big.raw_data) // 2]
    save("truncated_initializer", m)
    m = copy.deepcopy(good)
    next(n for n in m.graph.node if n.op_type in ("MatMul", "Gemm")).input[1] = "nowhere"
    save("dangling_input", m)
    m = copy.deepcopy(good)
    big = max(m.graph.initializer, key=lambda i: len(i.raw_data))
    big.ClearField("raw_data")
    big.data_location = onnx.TensorProto.EXTERNAL
    ext = big.external_data.add()
    ext.key, ext.value = "location", "missing.bin"
    save("missing_external_data", m)
    data = MODEL.read_bytes()
    for name, content in (("truncated_file", data[: len(data) * 2 // 3]), ("empty", b""),
                          ("text", b"network n { }\n"), ("zeros", bytes(4096))):
        out[name] = d / f"{name}.onnx"
        out[name].write_bytes(content)
    out["directory"] = d / "dir.onnx"
    out["directory"].mkdir()
    out["missing"] = d / "missing.onnx"
    return out


BAD_MODELS = ["truncated_initializer", "dangling_input", "missing_external_data",
              "truncated_file", "empty", "text", "zeros", "directory", "missing"]


@pytest.mark.parametrize("name", BAD_MODELS)
def test_check_refuses_broken_loaded_models_at_the_path(tmp_path, models, name):
    shutil.copy(models[name], tmp_path / "m.onnx") if models[name].is_file() else None
    if models[name].is_dir():
        (tmp_path / "m.onnx").mkdir()
    src = tmp_path / "t.nash"
    src.write_text('network m from "m.onnx"\n')
    code, err = invoke(["check", str(src)])
    assert code == 2 and err.startswith(f"{src}:1:16: error:"), err


@pytest.mark.parametrize("command", [
    ["verify", "--no-finn"], ["rewrite", "--wbits", "*=3"], ["estimate"],
])
@pytest.mark.parametrize("name", BAD_MODELS)
def test_model_commands_refuse_broken_models(tmp_path, models, command, name):
    args = [command[0], str(models[name]), *command[1:]]
    if command[0] in ("estimate", "rewrite"):
        args += ["-o", str(tmp_path / ("out" if command[0] == "estimate" else "o.onnx"))]
    code, err = invoke(args)
    assert code == 2 and err.startswith("error"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("body,rest", [
    ("  repeat 3 { }", ""),
    ("  pool p max kernel 2", ""),
    ("  fc f out 999999999999999", ""),
    ("  fc f out 10", "hardware {\n  clock 1e308 GHz\n}\n"),
    ("  fc f out 10", "search {\n  metric zero_shot batch 5000\n}\ntrain {\n  dataset digits\n}\n"),
    ("  fc f out 10 weights bipolar\n  fc g out 10", "space {\n  op f in {shift}\n}\n"),
    ("  fc f out 10", "hardware {\n  budget lut 101%\n}\n"),
    ("  fc f out 10", "hardware {\n  target kv260_som\n  budget lut 10%\n}\n"),
])
@pytest.mark.parametrize("command", ["check", "compile"])
def test_what_compile_cannot_do_is_refused_at_its_line(tmp_path, body, rest, command):
    src = tmp_path / "t.nash"
    src.write_text(NET % body + rest)
    args = [command, str(src)] + (["-o", str(tmp_path / "out")] if command == "compile" else [])
    code, err = invoke(args)
    assert code == 2 and any(line.startswith(f"{src}:") for line in err.splitlines()), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.nash"]  # nothing written


@pytest.mark.parametrize("command", ["check", "compile", "compile --target kv260_som"])
def test_percent_budget_on_a_board_without_a_resource_table(tmp_path, command):
    """FINN has no resource table for kv260_som: a percentage budget is refused at the
    budget item, whether the file or --target names the board (docs/targets.md)."""
    src = tmp_path / "t.nash"
    target = "" if "--target" in command else "  target kv260_som\n"
    src.write_text(NET % "  fc f out 10" + f"hardware {{\n{target}  budget dsp 4, lut 10%\n}}\n")
    name, *opts = command.split()
    args = [name, str(src), *opts] + (["-o", str(tmp_path / "out")] if name == "compile" else [])
    code, err = invoke(args)
    line = 7 if target else 6
    assert code == 2, err
    head = (f"{src}:{line}:17: error: budget 'lut 10%' needs the device size, but FINN has "
            "no resource table for kv260_som")
    assert any(ln.startswith(head) for ln in err.splitlines()), err
    assert "give an absolute count instead" in err and "^" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.nash"]  # nothing written


@pytest.mark.parametrize("command", ["compile", "train"])
def test_output_over_a_users_directory_or_file_is_refused(tmp_path, command):
    src = tmp_path / "t.nash"
    src.write_text(NET % "  fc f out 10" + "train {\n  dataset digits\n  epochs 1\n}\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("1,2,3")
    code, err = invoke([command, str(src), "-o", str(mine)])
    assert code == 2 and "was not written by nashc" in err and "--force" in err
    assert (mine / "data.csv").read_text() == "1,2,3"
    afile = tmp_path / "afile"
    afile.write_text("keep")
    code, err = invoke([command, str(src), "-o", str(afile), "--force"])
    assert code == 2 and "not a directory" in err and afile.read_text() == "keep"


def test_rewrite_output_onto_a_directory_is_refused(tmp_path):
    code, err = invoke(["rewrite", str(MODEL), "--wbits", "*=3", "-o", str(tmp_path)])
    assert code == 2 and "is a directory" in err
    assert list(tmp_path.iterdir()) == []


def test_rewrite_never_replaces_a_file_and_never_its_input(tmp_path):
    """`rewrite` replaced an existing -o file, and its own input with `-o MODEL`, silently
    (exit 0). Now: an existing file only with --force, the input never; nothing changes."""
    import shutil

    src = tmp_path / "m.onnx"
    shutil.copy(MODEL, src)
    before = src.read_bytes()
    for extra in ([], ["--force"]):
        code, err = invoke(["rewrite", str(src), "--wbits", "fc0=2", "-o", str(src), *extra])
        assert code == 2 and "is the input model" in err and src.read_bytes() == before
    mine = tmp_path / "mine.onnx"
    mine.write_text("keep")
    code, err = invoke(["rewrite", str(src), "--wbits", "fc0=2", "-o", str(mine)])
    assert code == 2 and "exists" in err and "--force" in err
    assert mine.read_text() == "keep"
    # the default output beside the model: written once, then refused without --force
    code, _ = invoke(["rewrite", str(src), "--wbits", "fc0=2"])
    default = tmp_path / "m_rewritten.onnx"
    assert code == 0 and default.exists()
    first = default.read_bytes()
    code, err = invoke(["rewrite", str(src), "--wbits", "fc0=3"])
    assert code == 2 and "exists" in err and default.read_bytes() == first
    code, _ = invoke(["rewrite", str(src), "--wbits", "fc0=3", "--force"])
    assert code == 0 and default.read_bytes() != first
    # verify --json: the same rule
    report = tmp_path / "report.json"
    report.write_text("keep")
    code, err = invoke(["verify", str(src), "--no-finn", "--json", str(report)])
    assert code == 2 and "exists" in err and report.read_text() == "keep"


def test_verify_json_onto_a_directory_is_refused(tmp_path):
    code, err = invoke(["verify", str(MODEL), "--no-finn", "--json", str(tmp_path)])
    assert code == 2 and "is a directory" in err


def test_internal_errors_are_one_line_unless_debugging(monkeypatch, tmp_path):
    import nashc.summary

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(nashc.summary, "print_summary", boom)
    src = tmp_path / "t.nash"
    src.write_text(NET % "  fc f out 10")
    result = runner().invoke(cli, ["check", str(src)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: internal error in nashc check: ZeroDivisionError: "
                                    "float division by zero\n")
    assert "NASHC_DEBUG=1" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.setenv("NASHC_DEBUG", "1")
    result = runner().invoke(cli, ["check", str(src)])
    assert isinstance(result.exception, ZeroDivisionError)


def test_tables_in_a_pipe_are_not_cut(tmp_path):
    """In a pipe rich's default width (80) cut the estimate table's PE/SIMD/DSP columns
    ("S…", "cycl…"): output that is not a terminal is PIPE_WIDTH columns wide."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-m", "nashc.cli", "estimate", str(MODEL),
                           "--target", "u250", "--budget", "lut 30%, dsp 0",
                           "-o", str(tmp_path / "est")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "layer" in line and "op" in line)
    for col in ("PE", "SIMD", "cycles", "LUT", "BRAM18", "URAM", "DSP"):
        assert col in header, header
    assert "…" not in proc.stdout

"""The benchmark command's output is consistent (timings themselves are never asserted)."""
import json

from polyinr.core.config import get_preset
from polyinr.tools import bench


def test_flops_per_pixel_imagenet():
    # ten [n, n] products dominate: 10 * (2 * 1024^2 + 6 * 1024) + 6 * 1024 FLOPs
    assert bench.flops_per_pixel(get_preset("imagenet")) == 10 * (2 * 1024 ** 2 + 6 * 1024) + 6 * 1024


def test_render_bench_json(capsys):
    assert bench.main(["render", "--preset", "letters", "--size", "8", "--batch", "2", "--repeats", "1",
                       "--chunk-pixels", "64"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ["preset", "size", "dtype", "mpix_per_s", "model_gflops_per_s", "gemm_gflops_per_s",
                "roofline_ratio", "peak_rss_mb"]:
        assert key in out
    assert out["chunk_rows"] == 64
    expected = bench.flops_per_pixel(get_preset("letters")) * 2 * 64 / out["seconds"] / 1e9
    assert abs(out["model_gflops_per_s"] - expected) / expected < 0.01
    assert abs(out["roofline_ratio"] - out["model_gflops_per_s"] / out["gemm_gflops_per_s"]) < 0.01


def test_gpu_check_code_path_on_cpu(tmp_path, capsys):
    """`bench gpu` needs a GPU for real numbers; --quick runs the same code at toy sizes."""
    assert bench.main(["gpu", "--device", "cpu", "--quick", "--out", str(tmp_path / "gpu.jsonl")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["bench"] for r in rows] == ["render", "render", "train", "inr_fit"]
    assert {r["dtype"] for r in rows[:2]} == {"float32", "bfloat16"}
    assert rows[2]["discriminator"] == "projected" and rows[2]["batch"] == 4
    assert abs(rows[2]["img_per_s"] - 4 / rows[2]["seconds_per_step"]) < 1e-3 * rows[2]["img_per_s"]
    assert rows[3]["device"] == "cpu" and rows[3]["size"] == 16 and rows[3]["steps"] == 3
    assert (tmp_path / "gpu.jsonl").read_text().count("\n") == 4


def test_gpu_check_writes_each_row_when_measured(tmp_path):
    """A GPU check stopped at its time limit keeps the rows it finished: when row k is reported, the
    output file already holds rows 1..k."""
    out = tmp_path / "gpu.jsonl"
    seen = []

    def echo(row):
        lines = out.read_text().splitlines()
        seen.append(len(lines))
        assert json.loads(lines[-1]) == row

    rows = bench.bench_gpu("cpu", quick=True, out=out, echo=echo)
    assert seen == [1, 2, 3, 4] and len(rows) == 4


def test_precision_bench_is_consistent(capsys):
    """Interleaved fp32 / bf16 rounds: the reported ratio is the median of the per-round ratios, the
    img/s are the medians of the per-round step times, and every synthesis op is timed in both dtypes."""
    import statistics
    assert bench.main(["precision", "--rounds", "3", "--steps-per-round", "1", "--batch", "4", "--resolution", "8",
                       "--set", "g_overrides", "{width: 16, levels: 3}"]) == 0
    out = json.loads(capsys.readouterr().out)
    s32, s16 = out["seconds_per_step"]["float32"], out["seconds_per_step"]["bfloat16"]
    assert len(s32) == len(s16) == 3
    ratios = sorted(a / b for a, b in zip(s32, s16))
    assert abs(out["ratio"] - ratios[1]) < 1e-3 * ratios[1] + 1e-3
    assert out["ratio_min"] <= out["ratio"] <= out["ratio_max"]
    assert abs(out["img_per_s"]["float32"] - 4 / statistics.median(s32)) < 1e-3 * out["img_per_s"]["float32"]
    assert out["feature_map"] == [4 * 8 * 8, 16] and out["width"] == 16 and out["compile"] is False
    ops = {"linear", "bmm_coords", "mul", "leaky_relu", "leaky_relu_backward", "clamp", "clamp_backward"}
    assert set(out["op_us"]) == {"float32", "bfloat16"}
    assert all(set(v) == ops for v in out["op_us"].values())

"""The benchmark command's output is consistent (timings themselves are never asserted)."""
import json

from polyinr import bench
from polyinr.config import get_preset


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
    assert [r["bench"] for r in rows] == ["render", "render", "train"]
    assert {r["dtype"] for r in rows[:2]} == {"float32", "bfloat16"}
    assert rows[2]["discriminator"] == "projected" and rows[2]["img_per_s"] > 0
    assert (tmp_path / "gpu.jsonl").read_text().count("\n") == 3

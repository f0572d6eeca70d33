"""Checkpoint round-trips, atomic writes, and clear errors for wrong files."""
import os

import pytest
import torch

import polyinr
from polyinr.core import checkpoint


def _G():
    return polyinr.build_generator("letters", width=16, levels=3)


def test_round_trip(tmp_path):
    G = _G()
    G.mapping.w_avg.normal_()
    path = polyinr.save_checkpoint(tmp_path / "g.pt", G, step=7)
    H = polyinr.load_generator(path)
    assert H.cfg == G.cfg and H.preset == "letters"
    sd, sd2 = G.state_dict(), H.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    ws = G.mapping(torch.randn(2, G.cfg.z_dim), torch.tensor([0, 1]))
    assert torch.equal(polyinr.render(G, ws, 8, 8), polyinr.render(H, ws, 8, 8))
    assert checkpoint.load_checkpoint(path)["step"] == 7


def test_dataset_and_class_names_travel_with_the_checkpoint(tmp_path):
    G = polyinr.Generator(polyinr.get_preset("letters", width=16, levels=3, num_classes=3, img_channels=3),
                          preset=None, dataset="pets", class_names=["cat", "dog", "owl"])
    H = polyinr.load_generator(polyinr.save_checkpoint(tmp_path / "g.pt", G))
    assert H.dataset == "pets" and H.class_names == ["cat", "dog", "owl"]
    old = checkpoint.load_checkpoint(polyinr.save_checkpoint(tmp_path / "h.pt", _G()))
    assert old["dataset"] is None and old["class_names"] is None            # nothing recorded: None, not guessed


def test_prefers_ema_weights(tmp_path):
    G, G_ema = _G(), _G()
    path = polyinr.save_checkpoint(tmp_path / "g.pt", G, G_ema=G_ema.state_dict())
    H = polyinr.load_generator(path)
    assert torch.equal(H.synthesis.to_rgb.weight, G_ema.synthesis.to_rgb.weight)
    assert torch.equal(polyinr.load_generator(path, key="G").synthesis.to_rgb.weight, G.synthesis.to_rgb.weight)


def test_wrong_preset_is_a_clear_error(tmp_path):
    path = polyinr.save_checkpoint(tmp_path / "g.pt", _G())
    with pytest.raises(ValueError, match="holds preset 'letters', not 'ffhq'"):
        polyinr.load_generator(path, preset="ffhq")
    with pytest.raises(ValueError, match="differing fields"):
        polyinr.load_generator(path, preset="letters")       # letters preset has another width


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        polyinr.load_generator(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        polyinr.load_generator(junk)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a polyinr checkpoint"):
        polyinr.load_generator(other)
    ckpt = checkpoint.load_checkpoint(polyinr.save_checkpoint(tmp_path / "g.pt", _G()))
    ckpt["G"]["synthesis.to_rgb.weight"] = torch.zeros(3, 5)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not fit its model_config"):
        polyinr.load_generator(tmp_path / "bad.pt")


def test_code_in_a_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = tmp_path / "evil.pt"
    torch.save({"format": "polyinr", "payload": Evil()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        checkpoint.load_checkpoint(path)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = polyinr.save_checkpoint(tmp_path / "latest.pt", _G(), step=1)

    def exploding_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        polyinr.save_checkpoint(path, _G(), step=2)
    monkeypatch.undo()
    assert checkpoint.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]     # no temp files left behind

import pytest

from detector.config import ConfigError, load_config


def test_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("data:\n  split: 2\n  target_sizes: [100, 200]\ntrain:\n  lr: 0.001\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  batch_size: 8\n")
    config = load_config(tmp_path / "child.yaml", ["train.lr=5e-4", "model.fusion=cross", "data.hflip=false"])
    assert config.data.split == 2 and config.data.target_sizes == [100, 200]
    assert config.train.batch_size == 8 and config.train.lr == 5e-4 and config.model.fusion == "cross"
    assert config.data.hflip is False
    assert config.train.seed == 42  # default kept


def test_unknown_key_names_closest(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key train.learning_rate"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"did you mean train\.batch_size"):
        load_config(None, ["train.batchsize=3"])
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(None, ["train.batch_size=two"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")

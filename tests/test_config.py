from pathlib import Path

import pytest

from detector.config import ConfigError, load_config, save_config


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


def test_every_shipped_config_loads_and_survives_the_saved_round_trip(tmp_path):
    root = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(root.rglob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        config = load_config(path)
        save_config(config, tmp_path / "config.yaml")  # what a run writes beside its checkpoints
        assert load_config(tmp_path / "config.yaml") == config, path


def test_sprites_config_is_the_main_job_with_other_data():
    """configs/sprites.yaml checks the main job's recipe elsewhere: only the data and the output folder differ."""
    root = Path(__file__).resolve().parents[1] / "configs"
    demo, sprites = load_config(root / "demo.yaml").to_dict(), load_config(root / "sprites.yaml").to_dict()
    assert {k for k in demo if demo[k] != sprites[k]} == {"data", "train"}
    assert {k for k in demo["train"] if demo["train"][k] != sprites["train"][k]} == {"output_dir"}
    changed = {k for k in demo["data"] if demo["data"][k] != sprites["data"][k]}
    assert changed == {"dataset", "unseen_classes"} | {
        f"{s}_{kind}" for s in ("train", "test") for kind in ("annotations", "images")
    }
    assert sprites["data"]["unseen_classes"] == [f"sprite {i:02d}" for i in range(1, 37) if i % 4 == 1]


def test_tiny_stage1_config_trains_the_long_configs_model():
    """configs/tiny_synthetic_stage1.yaml is stage 1 of the long config: the same model (its checkpoint starts
    stage 2 through train.init_from), the official stage-1 losses, its own output folder."""
    root = Path(__file__).resolve().parents[1] / "configs"
    stage1, long = load_config(root / "tiny_synthetic_stage1.yaml"), load_config(root / "tiny_synthetic_long.yaml")
    assert stage1.model == long.model
    assert (stage1.train.stage, stage1.train.stage1_recipe, long.train.stage) == (1, "official", 2)
    # the paper's stage-1 contrastive loss (SPEC: 128-d projection, weight 2, temperature 0.5)
    assert (stage1.loss.contrastive_dim, stage1.loss.contrastive_weight, stage1.loss.contrastive_temperature) == (
        128,
        2.0,
        0.5,
    )
    assert long.loss.contrastive_dim == 0  # the contrastive head is stage 1's alone
    assert stage1.train.output_dir != long.train.output_dir


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.batch_size=-2", "train.batch_size must be at least 1"),
        ("train.batch_size=0", "train.batch_size must be at least 1"),
        ("data.size_divisor=0", "data.size_divisor must be a positive multiple of 16"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be at least 1"),
        ("train.log_every=0", "train.log_every must be at least 1"),
        ("train.grad_accum=0", "train.grad_accum must be at least 1"),
        ("train.max_steps=-1", "train.max_steps must be 0 or more"),
        ("train.max_minutes=-5", "train.max_minutes must be 0"),
        ("train.amp=fp8", "train.amp must be one of auto, off, bf16, fp16"),
        ("train.absent_fraction=1", "train.absent_fraction must be at least 0 and below 1"),
        ("train.queries_per_target=0", "train.queries_per_target must be at least 1"),
        ("data.cache_mb=-1", "data.cache_mb must be 0"),
        ("loss.query_metric_weight=1", "set model.identity_classes .* or .* loss.query_metric_weight=0"),
        ("loss.query_metric_temperature=0", "loss.query_metric_temperature must be positive"),
        ("loss.identity_matched_weight=-1", "loss.identity_matched_weight must be 0"),
        ("train.amp=on", "train.amp must be one of auto, off, bf16, fp16"),  # YAML's boolean, named as written
        ("eval.repeats=0", "eval.repeats must be at least 1"),
        ("data.test_size=0", "data.test_size must be at least 32"),
        ("model.fusion=other", "model.fusion must be one of indirect, cross, misaligned"),
        ("data.dataset=imagenet", "data.dataset must be one of synthetic, coco, voc, custom"),
        ("train.lr=.inf", "train.lr must be a positive number"),
        ("model.num_heads=3", r"model.hidden_dim \(256\) must be divisible by model.num_heads \(3\)"),
    ],
)
def test_bad_values_fail_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_yaml_boolean_words_stay_words_for_string_keys():
    assert load_config(None, ["train.amp=off"]).train.amp == "off"  # YAML 1.1 reads off as false
    with pytest.raises(ConfigError, match="model.match_similarity must be true or false"):
        load_config(None, ["model.match_similarity=maybe"])


def test_coco_split_range_and_an_empty_section_that_keeps_its_base(tmp_path):
    with pytest.raises(ConfigError, match="data.split must be 1, 2, 3 or 4 for COCO"):
        load_config(None, ["data.dataset=coco", "data.split=5"])
    (tmp_path / "base.yaml").write_text("train:\n  batch_size: 8\n  lr: 0.001\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n")  # an empty section
    config = load_config(tmp_path / "child.yaml", ["train.seed=3"])
    assert config.train.batch_size == 8 and config.train.lr == 0.001 and config.train.seed == 3


def test_common_names_point_to_the_key_meant():
    with pytest.raises(ConfigError, match=r"did you mean train\.lr\?"):
        load_config(None, ["train.learning_rate=0.1"])


def test_invalid_yaml_names_the_file_and_the_line(tmp_path):
    (tmp_path / "broken.yaml").write_text("train:\n  lr: [0.1\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"broken.yaml is not valid YAML at line \d+"):
        load_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="is not a valid YAML value"):
        load_config(None, ["train.target_sizes=[1,2"])


def test_similarity_loss_needs_the_match_term():
    with pytest.raises(ConfigError, match="model.match_similarity"):
        tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_synthetic.yaml"
        load_config(tiny, ["model.match_similarity=false", "loss.similarity_weight=1"])


def test_similarity_class_logit_needs_the_match_term():
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny_synthetic.yaml"
    with pytest.raises(ConfigError, match="model.match_similarity"):
        load_config(tiny, ["model.match_similarity=false", "model.class_logit=similarity"])
    with pytest.raises(ConfigError, match="one of linear, similarity"):
        load_config(tiny, ["model.class_logit=cosine"])

"""tools/model_info.py: sizes from the config, parameter counts that add up."""

from pathlib import Path

from detector.cli.model_info import model_info
from detector.config import load_config
from detector.models import build_model

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny_synthetic.yaml"


def test_sizes_default_to_the_config_and_parameters_add_up():
    info = model_info(str(CONFIG))
    config = load_config(CONFIG)
    assert (info["target_size"], info["query_size"]) == (config.data.test_size, config.data.query_size)
    model = build_model(config.model, load_weights=False)
    params = info["parameters_M"]
    assert params["total"] == round(sum(p.numel() for p in model.parameters()) / 1e6, 3)
    parts = sum(v for k, v in params.items() if k != "total")
    assert abs(parts - params["total"]) <= 0.003  # every parameter in exactly one component (rounding aside)
    assert model_info(str(CONFIG), target_size=128, query_size=32)["grid"] == 128

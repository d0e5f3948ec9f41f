import pytest
from inference_helpers import save_random_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pth")

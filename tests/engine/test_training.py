import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from small_model import SHORT_RUN

from detector.config import ConfigError, load_config
from detector.engine.checkpoint import CheckpointError, load_checkpoint
from detector.engine.trainer import train

ROOT = Path(__file__).resolve().parents[2]
TINY = [*SHORT_RUN, "train.pretrain_steps=2", "train.pretrain_batch_size=4"]


def _overrides(synthetic_root, out, *extra):
    return [f"data.root={synthetic_root.parent}", f"train.output_dir={out}", *TINY, *extra]


@pytest.fixture(scope="module")
def data_root(synthetic_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    (root / "synthetic").symlink_to(synthetic_root)
    return root / "synthetic"


def _params(path):
    return load_checkpoint(path)["model"]


def test_two_step_run_writes_checkpoint_and_metrics(data_root, tmp_path):
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path, "train.max_steps=2"))
    summary = train(config, progress=False)
    assert summary["steps"] == 2 and summary["unseen_ap50"] is not None
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["position"]["step"] == 2 and "optimizer" in state and "rng" in state
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert [r["pretrain_steps"] for r in rows if "pretrain_accuracy" in r] == [2]  # ran once, before step 1
    assert any("unseen_ap50" in r for r in rows)
    assert (tmp_path / "config.yaml").is_file()


def _train_cli(data_root, out, *extra):
    return [
        sys.executable,
        str(ROOT / "tools/train.py"),
        "--config",
        str(ROOT / "configs/tiny_synthetic.yaml"),
        "--no-progress",
        *_overrides(data_root, out, "train.eval_every=-1", *extra),
    ]


def test_kill_and_resume_reaches_the_same_weights(data_root, tmp_path):
    steps = ["train.max_steps=8", "train.checkpoint_every=2"]
    subprocess.run(_train_cli(data_root, tmp_path / "straight", *steps), check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_cli(data_root, killed, *steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while not (killed / "checkpoint_0000004.pth").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    resumed_from = load_checkpoint(killed / "last.pth")["position"]["step"]
    assert 2 <= resumed_from < 8
    subprocess.run([*_train_cli(data_root, killed, *steps), "--resume", "auto"], check=True, capture_output=True)
    straight, resumed = _params(tmp_path / "straight" / "last.pth"), _params(killed / "last.pth")
    assert load_checkpoint(killed / "last.pth")["position"]["step"] == 8
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)
    # the tiny config evaluates an EMA of the weights: it resumes too, to the same average
    straight_ema, resumed_ema = (load_checkpoint(p / "last.pth")["ema"] for p in (tmp_path / "straight", killed))
    assert straight_ema is not None and straight_ema.keys() == resumed_ema.keys()
    for key in straight_ema:
        torch.testing.assert_close(resumed_ema[key], straight_ema[key], rtol=0, atol=0, msg=key)


def test_the_ema_averages_each_steps_weights_and_is_what_runs(data_root, tmp_path):
    from detector.engine.checkpoint import model_weights, trained_weights

    extra = ("train.max_steps=2", "train.checkpoint_every=1", "train.eval_every=-1", "train.ema_decay=0.5")
    train(load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path, *extra)), progress=False)
    first, second = load_checkpoint(tmp_path / "checkpoint_0000001.pth"), load_checkpoint(tmp_path / "last.pth")
    assert second["position"]["step"] == 2
    # by hand: the average starts as step 1's weights, then 0.5 x itself + 0.5 x step 2's
    averaged = model_weights(second)
    floats = {name for name, value in second["model"].items() if value.is_floating_point()}
    buffers = {name for name in floats if "running_" in name}
    assert buffers, "the tiny backbone has batch norms"
    for name in floats - buffers:
        expected = 0.5 * first["model"][name] + 0.5 * second["model"][name]
        torch.testing.assert_close(averaged[name], expected, msg=name)
        torch.testing.assert_close(model_weights(first)[name], first["model"][name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(averaged[n], second["model"][n]) for n in floats - buffers)
    for name in buffers:  # batch-norm statistics are the model's own, not averaged
        torch.testing.assert_close(averaged[name], second["model"][name], rtol=0, atol=0, msg=name)
    weights, _ = trained_weights(tmp_path / "last.pth")  # what evaluation and inference load
    assert all(torch.equal(weights[name], averaged[name]) for name in floats)


def test_the_backbone_body_freezes_at_its_step_and_stays_frozen_after_a_resume(data_root, tmp_path):
    """``train.freeze_backbone_at: 0.5`` of 4 steps: the body trains in steps 1-2 and not in 3-4 (the
    projection does); a run resumed from step 3 freezes again before its first step and ends bit-identical."""
    steps = ["train.max_steps=4", "train.checkpoint_every=1", "train.keep_checkpoints=4", "train.eval_every=-1"]
    straight = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path / "a", *steps, "train.freeze_backbone_at=0.5"),
    )
    train(straight, progress=False)
    at = {k: _params(tmp_path / "a" / f"checkpoint_000000{k}.pth") for k in (1, 2, 4)}
    # parameters only: like the official freeze (requires_grad), BatchNorm statistics keep their running update
    body = [
        k for k in at[1] if k.startswith("backbone.body.") and not k.rsplit(".", 1)[1].startswith(("running", "num"))
    ]
    assert body and all(torch.equal(at[2][k], at[4][k]) for k in body)
    assert not all(torch.equal(at[1][k], at[2][k]) for k in body)  # it trained in step 2
    assert not torch.equal(at[2]["backbone.input_proj.weight"], at[4]["backbone.input_proj.weight"])
    resumed = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path / "b", *steps, "train.freeze_backbone_at=0.5"),
    )
    train(resumed, resume=str(tmp_path / "a" / "checkpoint_0000003.pth"), progress=False)
    again = _params(tmp_path / "b" / "last.pth")
    for key in at[4]:
        torch.testing.assert_close(again[key], at[4][key], rtol=0, atol=0, msg=key)


def test_a_resumed_run_keeps_its_clock_for_the_time_cap_and_the_lr_drop_by_time(data_root, tmp_path):
    """Six steps with no cap (lr drop at step 6, i.e. never); resumed from step 3 under a cap half the time
    already spent, with ``train.lr_drop_by_time``: the first step of the resumed run moves the drop to step 5 and
    the cap stops the run there, with a clock that went on from the first run's. Resumed again with no cap,
    step 5 trains at x0.1: the moved drop came back from the checkpoint."""
    steps = ["train.max_steps=6", "train.lr_drop_at=1.0", "train.eval_every=-1", "train.checkpoint_every=1"]
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path / "a", *steps))
    train(replace(config, train=replace(config.train, keep_checkpoints=6)), progress=False)
    first = load_checkpoint(tmp_path / "a" / "checkpoint_0000003.pth")
    assert first["position"]["step"] == 3 and first["position"]["seconds"] > 0
    assert first["scheduler"]["lr_lambdas"][0]["drop"] == 6
    cap = first["position"]["seconds"] / 60 / 2
    capped = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path / "b", *steps, f"train.max_minutes={cap}", "train.lr_drop_by_time=true"),
    )
    summary = train(capped, resume=str(tmp_path / "a" / "checkpoint_0000003.pth"), progress=False)
    state = load_checkpoint(tmp_path / "b" / "last.pth")
    assert summary["steps"] == 4 and state["position"]["step"] == 4
    assert state["position"]["seconds"] > first["position"]["seconds"]
    assert state["scheduler"]["lr_lambdas"][0]["drop"] == 5
    on = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path / "c", *steps))
    train(on, resume=str(tmp_path / "b" / "last.pth"), progress=False)

    def lrs(path):  # the lr each group's next step trains at
        return [(g["lr"], g["initial_lr"]) for g in load_checkpoint(path)["optimizer"]["param_groups"]]

    assert all(lr == pytest.approx(initial) for lr, initial in lrs(tmp_path / "b" / "last.pth"))  # step 4: past warm-up
    assert all(lr == pytest.approx(initial * 0.1) for lr, initial in lrs(tmp_path / "c" / "checkpoint_0000005.pth"))


def test_a_run_resumed_to_train_longer_drops_its_lr_at_the_new_length(data_root, tmp_path):
    """Four steps with the drop at int(1.0 * 4) = 4, i.e. never; resumed from its end with max_steps 8 and
    lr_drop_at 0.75: the drop moves to step index int(0.75 * 8) = 6 (the old one, 4, would have made every resumed
    step x0.1)."""
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path, "train.max_steps=4"))
    train(replace(config, train=replace(config.train, eval_every=-1)), progress=False)
    assert load_checkpoint(tmp_path / "last.pth")["scheduler"]["lr_lambdas"][0]["drop"] == 4
    longer = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path, "train.max_steps=8", "train.lr_drop_at=0.75", "train.eval_every=-1"),
    )
    train(longer, resume="auto", progress=False)
    state = load_checkpoint(tmp_path / "last.pth")
    assert state["position"]["step"] == 8 and state["scheduler"]["lr_lambdas"][0]["drop"] == 6
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    # a row's lr is the one the scheduler set after its step, for the next: rows 5..8 hold indices 5..8's
    lr = {r["step"]: r["lr"] for r in rows if "lr" in r and r["step"] > 4}
    base = longer.train.lr
    assert [lr[step] for step in (5, 6, 7, 8)] == pytest.approx([base, base * 0.1, base * 0.1, base * 0.1])


def test_corrupted_and_foreign_checkpoints_are_refused(data_root, tmp_path):
    config = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path, "train.max_steps=1", "train.eval_every=-1"),
    )
    train(config, progress=False)
    good = (tmp_path / "last.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(tmp_path / "truncated.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "text.pth")
    other = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(data_root, tmp_path, "train.max_steps=2", "model.num_layers=2"),
    )
    with pytest.raises(CheckpointError, match="model.num_layers: checkpoint 1, config 2"):
        train(other, resume=str(tmp_path / "last.pth"), progress=False)


def test_config_typo_names_the_closest_key():
    with pytest.raises(ConfigError, match=r"unknown config key train.max_step; did you mean train\.max_steps"):
        load_config(ROOT / "configs/tiny_synthetic.yaml", ["train.max_step=3"])
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools/train.py"),
            "--config",
            str(ROOT / "configs/tiny_synthetic.yaml"),
            "model.fusoin=cross",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "did you mean model.fusion" in result.stderr


@pytest.mark.slow
def test_torchrun_two_processes_keep_replicas_identical(data_root, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        str(ROOT / "tools/train.py"),
        "--config",
        str(ROOT / "configs/tiny_synthetic.yaml"),
        "--no-progress",
        *_overrides(
            data_root,
            tmp_path,
            "train.max_steps=3",
            "train.eval_every=0",
            "train.checkpoint_every=1",
            "train.freeze_backbone_at=0.34",  # frozen after step 1: DDP then sees a body with no gradients
            "train.max_minutes=600",  # a time cap: the processes agree on the clock every step (an all-reduce)
            "train.lr_drop_by_time=true",
        ),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = json.loads((tmp_path / "summary.json").read_text())
    rank1 = json.loads((tmp_path / "summary_rank1.json").read_text())
    assert rank0["steps"] == rank1["steps"] == 3
    assert rank0["parameter_fingerprint"] == rank1["parameter_fingerprint"]
    assert rank0["unseen_ap50"] == rank1["unseen_ap50"]  # evaluation shards gathered on every rank
    first, last = _params(tmp_path / "checkpoint_0000001.pth"), _params(tmp_path / "checkpoint_0000003.pth")
    body = [
        k for k in first if k.startswith("backbone.body.") and not k.rsplit(".", 1)[1].startswith(("running", "num"))
    ]
    assert body and all(torch.equal(first[k], last[k]) for k in body)
    assert 0 < load_checkpoint(tmp_path / "last.pth")["position"]["seconds"] < 600 * 60


def test_several_queries_per_target_train_each_target_once_per_step(data_root, tmp_path):
    extra = ("train.queries_per_target=2", "train.max_steps=3", "train.batch_size=2", "train.eval_every=-1")
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path, *extra))
    summary = train(config, progress=False)
    assert summary["steps"] == 3 and summary["epochs"] == 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    stage1 = replace(config, train=replace(config.train, stage=1))
    with pytest.raises(ValueError, match="train.queries_per_target applies to stage 2"):
        train(stage1, progress=False)


@pytest.mark.parametrize("recipe", ["official", "crop_only"])
def test_stage1_self_supervised_then_stage2_from_it(data_root, tmp_path, recipe):
    stage1 = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(
            data_root,
            tmp_path / "s1",
            "train.stage=1",
            f"train.stage1_recipe={recipe}",
            "train.max_steps=2",
            "loss.contrastive_dim=16",
            "model.backbone.trainable=false",
            "train.eval_every=-1",
        ),
    )
    train(stage1, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "s1" / "metrics.jsonl").read_text().splitlines()]
    assert all("contrastive" in r for r in rows if "loss" in r)
    frozen = load_checkpoint(tmp_path / "s1" / "last.pth")["model"]
    stage2 = load_config(
        ROOT / "configs/tiny_synthetic.yaml",
        _overrides(
            data_root,
            tmp_path / "s2",
            "train.max_steps=1",
            f"train.init_from={tmp_path / 's1' / 'last.pth'}",
            "train.eval_every=-1",
            "train.lr=1e-12",
            "train.warmup_steps=1",
        ),
    )
    train(stage2, progress=False)
    started = load_checkpoint(tmp_path / "s2" / "last.pth")["model"]
    key = "decoder.layers.0.fusion.q_proj.weight"
    torch.testing.assert_close(started[key], frozen[key], rtol=0, atol=1e-6)  # lr ~ 0: still the stage-1 weights


def test_non_finite_loss_stops_with_the_step_and_terms(data_root, tmp_path, monkeypatch):
    from detector.models.criterion import SetCriterion

    original = SetCriterion.forward

    def poisoned(self, outputs, targets, num_boxes=None):
        losses = original(self, outputs, targets, num_boxes)
        losses["giou"] = losses["giou"] * float("nan")
        losses["loss"] = sum(v for k, v in losses.items() if k != "loss")
        return losses

    monkeypatch.setattr(SetCriterion, "forward", poisoned)
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", _overrides(data_root, tmp_path, "train.max_steps=3"))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 0 \(terms \['giou', 'loss'\]"):
        train(config, progress=False)
    saved = load_checkpoint(tmp_path / "nonfinite_step0000000.pth")
    assert saved["batch_meta"] and "image_id" in saved["batch_meta"][0]


def test_eval_several_split_checkpoints_in_one_call(data_root, tmp_path):
    from detector.cli.eval import main as eval_main

    paths = []
    for split in (1, 2):
        out = tmp_path / f"split{split}"
        train(
            load_config(
                ROOT / "configs/tiny_synthetic.yaml",
                _overrides(data_root, out, "train.max_steps=1", "train.eval_every=-1", f"data.split={split}"),
            ),
            progress=False,
        )
        paths.append(str(out / "last.pth"))
    results = eval_main(
        [
            "--config",
            str(ROOT / "configs/tiny_synthetic.yaml"),
            "--out",
            str(tmp_path / "eval"),
            "--no-progress",
            "--checkpoint",
            *paths,
            *_overrides(data_root, tmp_path),  # right after the checkpoints, as the README writes it
        ]
    )
    assert set(results) == {1, 2}
    assert (tmp_path / "eval" / "split1" / "results.json").is_file()
    table = (tmp_path / "eval" / "splits.md").read_text()
    assert "| ours |" in table and "split 1 seen / unseen" in table and "split 2 seen / unseen" in table


def test_a_diverging_run_stops_before_any_checkpoint_holds_non_finite_weights(data_root, tmp_path):
    overrides = _overrides(data_root, tmp_path, "train.max_steps=40", "train.lr=1e2", "train.warmup_steps=0")
    overrides += ["train.checkpoint_every=1", "train.clip_grad_norm=0", "train.eval_every=-1"]
    config = load_config(ROOT / "configs/tiny_synthetic.yaml", overrides)
    with pytest.raises(FloatingPointError, match=r"at step \d+ \(terms \[") as error:
        train(config, progress=False)
    assert "matrix contains invalid" not in str(error.value)
    from detector.engine.trainer import _lock

    _lock(tmp_path).close()  # the failed run released its folder (a retry in the same session may use it)
    for path in tmp_path.glob("*.pth"):
        if path.name.startswith("nonfinite"):
            continue
        for name, tensor in load_checkpoint(path)["model"].items():
            assert torch.isfinite(tensor.float()).all(), f"{path.name}: {name}"


def test_autocast_dtype_of_each_amp_setting_and_the_cpu_bf16_check(tmp_path, monkeypatch):
    from detector.engine import loop
    from detector.engine.loop import amp_dtype_for, cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert amp_dtype_for("bf16", cpu) == torch.bfloat16  # asked for: CPU autocast
    assert amp_dtype_for("off", cpu) is None and amp_dtype_for("off", cpu, native_bf16=True) is None
    # auto: bf16 only on a CPU that computes it in hardware (emulated bf16 is several times slower than fp32)
    assert amp_dtype_for("auto", cpu, native_bf16=True) == torch.bfloat16
    assert amp_dtype_for("auto", cpu, native_bf16=False) is None
    expected = torch.bfloat16 if cpu_has_native_bf16() else None  # without the flag: this machine's /proc/cpuinfo
    assert amp_dtype_for("auto", cpu) == expected
    with monkeypatch.context() as patch:  # the flags cannot be read (not Linux): full precision
        patch.setattr(loop, "cpu_has_native_bf16", lambda: None)
        assert amp_dtype_for("auto", cpu) is None
    assert amp_dtype_for("fp16", cpu) is None  # CUDA-only
    zen4 = tmp_path / "zen4"
    zen4.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n\nprocessor\t: 1\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    sapphire = tmp_path / "sapphire"
    sapphire.write_text("flags\t\t: avx512f amx_tile amx_bf16\n")
    assert cpu_has_native_bf16(str(zen4)) is True and cpu_has_native_bf16(str(sapphire)) is True
    assert cpu_has_native_bf16(str(old)) is False
    assert cpu_has_native_bf16(str(tmp_path / "absent")) is None

"""Engine: training loop, checkpoints, optimisation, evaluation runs, torch.distributed helpers."""

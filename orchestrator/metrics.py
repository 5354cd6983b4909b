"""The leaderboard's metrics: name -> higher is better. No imports, so `--help` stays light."""

METRICS: dict[str, bool] = {"val_acc": True, "last_val_acc": True, "val_loss": False, "test_acc": True,
                            "images_per_s": True}

# which value of a run a metric is (orchestrator/analysis/configs.py's run_value): said beside the
# metric's name in titles, since a run's best epoch is not its last (80.0 at the best epoch, 78.0 at the end).
# The best epoch is chosen on the validation images it is then measured on, so it flatters every run (most
# the noisiest); the last epoch is chosen by nothing: last_val_acc ranks without that bias.
WHICH_VALUE: dict[str, str] = {"val_acc": "best epoch", "last_val_acc": "last epoch",
                               "val_loss": "at the best val_acc epoch",
                               "test_acc": "scored", "images_per_s": "mean over epochs"}


def metric_title(metric: str) -> str:
    """'val_acc (best epoch)': the metric's name and which of a run's values it is."""
    return f"{metric} ({WHICH_VALUE[metric]})" if metric in WHICH_VALUE else metric

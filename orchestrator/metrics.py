"""The leaderboard's metrics: name -> higher is better. No imports, so `--help` stays light."""

METRICS: dict[str, bool] = {"val_acc": True, "val_loss": False, "test_acc": True, "images_per_s": True}

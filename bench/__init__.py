"""`scripts/bench`: the product measured against bare baselines in the same run."""

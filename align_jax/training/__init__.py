"""Training engine: train state, objectives, metrics, pure steps, checkpoints, the loop."""

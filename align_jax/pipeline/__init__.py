"""Orchestration: the fine-tuning protocol, the alignment run and the whole study."""

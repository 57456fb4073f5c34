"""Orchestration: the fine-tuning protocol, the alignment run and the whole study."""


def split_list(text: str) -> list[str]:
  """A comma-separated config field -> its items: 'a, b,c' -> ['a', 'b', 'c']."""
  return [item.strip() for item in text.split(",") if item.strip()]

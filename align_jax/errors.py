"""The one exception type for problems the user can fix (flags, config values, files)."""


class InputError(ValueError):
  """Bad user input: the message says what was wrong and what to do instead.

  Entry points print it without a traceback; anything else is a bug and keeps its traceback.
  """

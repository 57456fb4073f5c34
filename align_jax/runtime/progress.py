"""Progress lines for long loops: about every 10% or every 30 s, whichever is rarer.

A loop that finishes within PERIOD_S prints nothing; a longer one prints a few lines naming what
it works on, with the time per item and the time left, and one line when it ends.
"""

import time

from absl import logging

PERIOD_S = 30.0


class Progress:
  """`update(done)` after each of `total` items of the work named `what`."""

  def __init__(self, what: str, total: int):
    self.what, self.total = what, total
    self.start = self.last_time = time.perf_counter()
    self.last_done = 0

  def update(self, done: int) -> None:
    now = time.perf_counter()
    if done >= self.total:
      if now - self.start >= PERIOD_S:
        logging.info("%s: %d done in %.0f s.", self.what, self.total, now - self.start)
      return
    if (done - self.last_done >= max(1, self.total // 10)
        and now - self.last_time >= PERIOD_S):
      each = (now - self.start) / done
      logging.info("%s: %d/%d, %.2f s each, ~%.0f s left.", self.what, done, self.total, each,
                   each * (self.total - done))
      self.last_done, self.last_time = done, now

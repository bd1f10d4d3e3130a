"""
A run this process trains itself -- a learner's loop under core.watch, `python -m core train` --
taking the dashboard's commands as a page's worker does (core.runs.worker): Pause, Resume, Step N
and Stop, through the run's command slot in the runs file.

The loop calls look() between steps (or chunks of steps): it reads the slot at most every
LOOK_SECONDS, so the loop pays nothing in between. A pause holds the loop inside look() until
Resume, Step or Stop; a stop is returned as its reason, for the loop to end itself its own way
(watch raises Stopped, the CLI prints its report).
"""

import time

LOOK_SECONDS = 0.2          # read the command slot at most this often while training
PAUSED_LOOK_SECONDS = 0.05  # and this often while paused (Resume answers within this)
STOPPED = {"stop": "stopped from the dashboard", "ended": "the run was ended from the dashboard"}


class Remote:

    def __init__(self, store, set_state, flush):
        """store: the run's RunStore (its db and run_id); set_state("paused" | "running") records the state;
        flush() writes what the run holds, so a page sees the pause at once."""
        self.store = store
        self._set_state, self._flush = set_state, flush
        self.budget = None  # steps left before pausing again (a page's Step)
        self._next_look = 0.0

    def look(self):
        """Obey the page's latest command, if any: a reason to stop (str), or None to go on. Blocks while paused."""
        now = time.monotonic()
        if now < self._next_look:
            return None
        self._next_look = now + LOOK_SECONDS
        return self._obey(self._take())

    def allowed(self, n):
        """How many of n steps may run before the next look (a page's Step counts them down)."""
        return n if self.budget is None else min(n, self.budget)

    def took(self, n=1):
        """n steps done: when a page's Step has had its steps, pause again. A reason to stop, or None."""
        if self.budget is None:
            return None
        self.budget -= n
        if self.budget > 0:
            return None
        self.budget = None
        return self.hold()

    def hold(self):
        """Pause: hold the loop until Resume, Step or Stop. A reason to stop, or None once it may go on."""
        self._set_state("paused")
        self._flush()
        try:
            while True:
                cmd = self._take()
                if cmd in STOPPED:
                    return STOPPED[cmd]
                if cmd == "resume" or self._stepping(cmd):
                    break
                time.sleep(PAUSED_LOOK_SECONDS)
        except KeyboardInterrupt:  # Ctrl-C (or a notebook's interrupt) while paused: the loop is theirs again
            self._set_state("running")
            self._flush()
            raise
        self._set_state("running")
        self._flush()
        return None

    def _take(self):
        cmd, _ = self.store.db.take_command(self.store.run_id)
        return cmd

    def _obey(self, cmd):
        if cmd in STOPPED:
            return STOPPED[cmd]
        if cmd == "pause":
            return self.hold()
        self._stepping(cmd)
        return None

    def _stepping(self, cmd):
        if cmd and cmd.startswith("step:"):
            self.budget = max(1, int(cmd.split(":")[1]))
            return True
        return False


def next_chunk(chunk, n, done, seconds, target):
    """The next chunk of steps for a loop that looks at its commands between chunks: aimed at `target`
    seconds, growing or shrinking by at most 2x (n steps asked, `done` done, in `seconds`)."""
    if done != n:
        return chunk
    return max(1, min(chunk * 2, int(n * target / max(seconds, 1e-6))))

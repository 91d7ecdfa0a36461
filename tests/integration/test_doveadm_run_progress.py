"""doveadm backfill run -A --parallel N shows its progress while the
workers merge (it showed nothing until a worker ended): users done of the
total, the workers running, the messages merged so far (also inside the
workers' unfinished merges), the rate and an ETA; rewritten in place on a
terminal, a plain line every 10 s otherwise.  The merges are slowed with
--rate so that the run lasts long enough to watch."""
import os
import re
import shlex
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

N_USERS = 4
MESSAGES = 300
# 2 workers at 80 msg/s shared: each user takes about 7.5 s, the run 15 s
ARGS = ["backfill", "run", "-A", "--parallel", "2", "--rate", "80"]


class RunProgressTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        bd.use_full_usernames(self.site)
        for i in range(N_USERS):
            self.site.add_user("p%d@example.org" % i,
                               mg.bulk_scenario(i + 1, MESSAGES, 0, 0), record=False)
        self.site.start(plugin_on=False)

    def cmd(self):
        return bd.doveadm_argv(self.site.dc, *ARGS)

    def test_log_lines_without_a_terminal(self):
        r = subprocess.run(self.cmd(), capture_output=True, text=True, timeout=300,
                           env=self.site.dc.sanitizer_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.startswith("backfill run: ")]
        # a line every 10 s while it runs, before the final one
        progress = [l for l in lines if " of %d users" % N_USERS in l]
        self.assertTrue(progress, r.stderr)
        self.assertRegex(progress[0], r"backfill run: \d of %d users \(\d done, 0 busy, "
                                      r"0 failed\)(, [12] running)?, \d+ messages, \d+ msg/s, "
                                      r"[\d.]+ s" % N_USERS)
        self.assertIn("backfill run: %d users (%d done, 0 busy, 0 failed), %d messages"
                      % (N_USERS, N_USERS, N_USERS * MESSAGES), r.stderr)

    def test_terminal_line_while_workers_merge(self):
        # script(1) gives doveadm a terminal on stdout and stderr
        r = subprocess.run(["script", "-qfec", shlex.join(self.cmd()), "/dev/null"],
                           capture_output=True, text=True, timeout=300,
                           env=self.site.dc.sanitizer_env())
        self.assertEqual(r.returncode, 0, r.stdout[-3000:])
        updates = [u for u in re.split(r"[\r\n]+", r.stdout) if u.startswith("backfill run: ")]
        # before any user is done, the workers' messages so far already count
        early = [u for u in updates
                 if re.match(r"backfill run: 0 of %d users .*, 2 running, [1-9]\d* messages"
                             % N_USERS, u)]
        self.assertTrue(early, "\n".join(updates[:20]))
        # once users are done: an ETA
        self.assertTrue(any(re.search(r" of %d users .*, ETA \d+ s" % N_USERS, u)
                            for u in updates), "\n".join(updates[:40]))
        counts = [int(m.group(1)) for u in updates
                  for m in [re.search(r"\), (?:\d running, )?(\d+) messages", u)] if m]
        self.assertEqual(counts, sorted(counts), "messages never go back")


if __name__ == "__main__":
    unittest.main(verbosity=2)

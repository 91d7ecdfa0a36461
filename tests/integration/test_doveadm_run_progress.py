"""doveadm backfill run -A --parallel N shows its progress while the
workers merge (it showed nothing until a worker ended): users done of the
total, the workers running, the messages merged so far (also inside the
workers' unfinished merges), the rate and an ETA; rewritten in place on a
terminal, a plain line every 10 s otherwise.  The merges are slowed with
--rate so that the run lasts long enough to watch.

Without -p (or with -p 1) doveadm merges itself and no worker pipe exists:
nothing may be written where a worker's report would go (before the fix the
"p\tN" report lines went to fd 0: on a terminal they showed up on screen,
with a read-only stdin as from cron every merge of more than 0.5 s logged
"write(progress pipe) failed: Bad file descriptor")."""
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402

N_USERS = 4
MESSAGES = 300
# 2 workers at 80 msg/s shared: each user takes about 7.5 s, the run 15 s
ARGS = ["backfill", "run", "-A", "--parallel", "2", "--rate", "80"]
# one user at 400 msg/s: 0.75 s, longer than the 0.5 s between reports
SERIAL_RATE = "400"
# a worker's report line ("p", tab, messages so far) outside its pipe
REPORT_LINE = re.compile(r"(?:^|[\r\n])p\t\d+")


def run_on_terminal(argv, env, timeout=300):
    """argv with a pseudo-terminal as stdin, stdout and stderr (an operator
    at a shell); returns (exit status, everything the terminal got)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    out, deadline = b"", time.time() + timeout
    try:
        while time.time() < deadline:
            if not select.select([fd], [], [], 1)[0]:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's last process is gone
                break
            if not data:
                break
            out += data
    finally:
        os.close(fd)
        if time.time() >= deadline:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


class RunProgressTest(unittest.TestCase):
    def setUp(self):
        self.site = bftest.Site()
        self.addCleanup(self.site.close)
        self.addCleanup(bd.check_log_no_stray_write, self.site.dc)
        bd.use_full_usernames(self.site)
        for i in range(N_USERS):
            self.site.add_user("p%d@example.org" % i,
                               mg.bulk_scenario(i + 1, MESSAGES, 0, 0), record=False)
        self.site.start(plugin_on=False)

    def cmd(self):
        return bd.doveadm_argv(self.site.dc, *ARGS)

    def test_log_lines_without_a_terminal(self):
        with bd.stdin_readonly() as stdin:
            r = subprocess.run(self.cmd(), stdin=stdin, capture_output=True, text=True,
                               timeout=300, env=self.site.dc.sanitizer_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        bd.check_no_stray_write(r.stderr)
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
        bd.check_no_stray_write(r.stdout)
        self.assertIsNone(REPORT_LINE.search(r.stdout), r.stdout[-3000:])
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

    def test_without_workers_from_cron(self):
        """Without -p and with -p 1, stdin read-only as cron gives it: the
        per-user progress lines, and no write meant for a worker's pipe."""
        for user, extra in (("p0@example.org", []), ("p1@example.org", ["-p", "1"])):
            argv = bd.doveadm_argv(self.site.dc, "backfill", "run", "-u", user,
                                   "--rate", SERIAL_RATE, *extra)
            with bd.stdin_readonly() as stdin:
                r = subprocess.run(argv, stdin=stdin, capture_output=True, text=True,
                                   timeout=300, env=self.site.dc.sanitizer_env())
            self.assertEqual(r.returncode, 0, r.stderr)
            bd.check_no_stray_write(r.stderr)
            self.assertIn("backfill run: %s: %d messages" % (user, MESSAGES), r.stderr)
            self.assertIn("backfill run: 1 users (1 done, 0 busy, 0 failed), %d messages"
                          % MESSAGES, r.stderr)

    def test_without_workers_on_a_terminal(self):
        """Without -p on a terminal (stdin too): the in-place progress line
        and nothing else of the run's own; no report line on the screen."""
        argv = bd.doveadm_argv(self.site.dc, "backfill", "run", "-u", "p2@example.org",
                               "--rate", SERIAL_RATE)
        code, out = run_on_terminal(argv, self.site.dc.sanitizer_env() or dict(os.environ))
        self.assertEqual(code, 0, out[-3000:])
        bd.check_no_stray_write(out)
        self.assertIsNone(REPORT_LINE.search(out), out[-3000:])
        # the merge lasted long enough for in-place updates
        self.assertRegex(out, r"\rbackfill run: p2@example\.org: \d+/%d messages, \d+ msg/s, ETA"
                         % MESSAGES)
        self.assertIn("backfill run: 1 users (1 done, 0 busy, 0 failed), %d messages"
                      % MESSAGES, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""Issue 3, tests 5 and 6: kill -9 of the session process at many points of
a merge, and ten simultaneous IMAP and POP3 sessions of one user.

Three users get the same archive and the same live mailbox (one seed):
  ref   merged without interruption: the reference result
  kim   its imap/pop3 process is SIGKILLed at >= 20 points of the merge
        (during the login budget and during the background slices), then
        logs in again until the merge finishes
  tess  ten sessions (five IMAP, five POP3) log in at the same instant
The final mailboxes (folder, fingerprint, flags, received date) and POP3
UIDL lists of kim and tess must equal ref's.
"""
import collections
import imaplib
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402

N_ARCHIVE = int(os.environ.get("BF_CRASH_ARCHIVE", "6000"))
KILLS = 24


class MergeCrash(bftest.SiteCase):
    SITE = dict(plugin={"backfill_login_budget": "50ms"})

    @classmethod
    def build(cls, site):
        scen = mg.bulk_scenario(5, N_ARCHIVE, 300, 150, lines=6, multipart_share=0.02)
        view = site.add_user("ref", scen)
        for user in ("kim", "tess"):
            site.add_user(user, scen, record=False)
            site.views[user] = view
        site.start(plugin_on=False)
        cls.pre = {u: site.dc.snapshot(u) for u in ("ref", "kim", "tess")}
        site.enable_plugin()
        t0 = time.time()
        site.wait_merged("ref", timeout=300)
        cls.ref_seconds = time.time() - t0
        cls.ref = site.dc.snapshot("ref")
        cls.ref_uidls = site.dc.pop3_uidls("ref")

    def test_0_reference_is_exact(self):
        exp, _, _ = bftest.expected_after(self.pre["ref"], self.site.views["ref"])
        got = bftest.multiset(self.ref)
        self.assertEqual(got, exp, bftest.diff(exp, got))

    def same_as_ref(self, user):
        got = bftest.multiset(self.site.dc.snapshot(user))
        exp = bftest.multiset(self.ref)
        self.assertEqual(len(got), len(exp), bftest.diff(exp, got))
        self.assertEqual(got, exp, bftest.diff(exp, got))
        uidls = self.site.dc.pop3_uidls(user)
        self.assertEqual(collections.Counter(uidls), collections.Counter(self.ref_uidls))

    # ---------------------------------------------------------- test 5
    def _kill_session(self, user, pid_wait=5.0):
        dc = self.site.dc
        deadline = time.time() + pid_wait
        while time.time() < deadline:
            pids = dc.session_pids(user)
            if pids:
                for p in pids:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return pids
            time.sleep(0.001)
        return []

    def _drop_stale_locks(self, user):
        """A SIGKILL between Dovecot creating dovecot-uidlist.lock and
        writing its PID into it leaves an empty dotlock, which Dovecot only
        overrides after its 2-minute stale timeout (its own behaviour, with
        or without the plugin). With no session of the user alive every
        lock is stale: remove them instead of waiting out the timeout."""
        home = os.path.join(self.site.base, "live", user)
        for root, dirs, files in os.walk(home):
            for f in files:
                if f.endswith(".lock"):
                    try:
                        os.unlink(os.path.join(root, f))
                    except FileNotFoundError:
                        pass

    def _login_raw(self, service, user):
        """Start a login and return the socket without waiting for the
        answer: the merge runs inside the login's budget."""
        s = socket.create_connection(("127.0.0.1", self.site.dc.ports[service]), timeout=30)
        s.recv(1024)
        if service == "imap":
            s.sendall(b"a LOGIN %s %s\r\n" % (user.encode(), self.site.dc.password(user).encode()))
        else:
            s.sendall(b"USER %s\r\n" % user.encode())
            s.recv(1024)
            s.sendall(b"PASS %s\r\n" % self.site.dc.password(user).encode())
        return s

    def test_5_kill9_at_many_points(self):
        rng = random.Random(55)
        dc = self.site.dc
        user = "kim"
        # spread the kills over about 80% of the reference merge's duration
        step = max(0.02, 0.8 * self.ref_seconds / KILLS)
        kills_unfinished = 0
        points = []
        for i in range(KILLS + 6):
            if self.site.finished_lines(user):
                break
            mode = ("login-imap", "login-pop3", "slices")[i % 3]
            killed = []
            try:
                if mode == "slices":
                    c = dc.imap(user)
                    end = time.time() + rng.uniform(0, 2 * step)
                    while time.time() < end:
                        c.noop()
                    killed = self._kill_session(user)
                    try:
                        c.shutdown()
                    except OSError:
                        pass
                else:
                    s = self._login_raw("imap" if mode == "login-imap" else "pop3", user)
                    time.sleep(rng.uniform(0, min(0.05, 2 * step)))
                    killed = self._kill_session(user)
                    s.close()
            except (OSError, imaplib.IMAP4.error) as e:
                # A SIGKILL can leave Dovecot's own empty dovecot-uidlist.lock
                # behind; the next session then waits for it to go stale
                # (Dovecot's behaviour, with or without the plugin).
                print("kill %d (%s): session failed: %r" % (i, mode, e), file=sys.stderr)
                killed = self._kill_session(user, pid_wait=0.1)
            if killed and not self.site.finished_lines(user):
                kills_unfinished += 1
                points.append((mode, len(dc.log_lines(bftest.bf_log("kim") + "merge (started|resumed)"))))
            # the master may log the killed child; wait until it is gone
            deadline = time.time() + 5
            while dc.session_pids(user) and time.time() < deadline:
                time.sleep(0.01)
            if not dc.session_pids(user):
                self._drop_stale_locks(user)
        print("\n%d kills hit the unfinished merge (reference merge %.2fs)" % (
            kills_unfinished, self.ref_seconds), file=sys.stderr)
        self.assertGreaterEqual(kills_unfinished, 20,
                                "only %d kills hit an unfinished merge (ref took %.2fs): %s"
                                % (kills_unfinished, self.ref_seconds, points))
        self.site.wait_merged(user, timeout=300)
        self.same_as_ref(user)
        self.assertEqual(len(self.site.finished_lines(user)), 1)
        # the master reports each SIGKILL as "Fatal: ... killed with signal 9"
        bad = [l for l in dc.log_lines(r"\b(Panic|Fatal)\b") if "killed with signal 9" not in l]
        self.assertEqual(bad, [])

    # ---------------------------------------------------------- test 6
    def test_6_ten_simultaneous_sessions(self):
        user = "tess"
        dc = self.site.dc
        barrier = threading.Barrier(10)
        errors = []

        def imap_session():
            try:
                barrier.wait()
                c = dc.imap(user)
                end = time.time() + 3
                while time.time() < end:
                    c.noop()
                    time.sleep(0.02)
                c.logout()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        def pop3_session():
            try:
                barrier.wait()
                for _ in range(3):
                    p = dc.pop3(user)
                    p.stat()
                    p.quit()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=imap_session if i % 2 else pop3_session)
                   for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [], "a login failed")
        self.site.wait_merged(user, timeout=300)
        self.same_as_ref(user)
        self.assertEqual(len(self.site.finished_lines(user)), 1)
        # A POP3 session that paused before its first checkpoint leaves
        # nothing behind, so the next one logs "started" again: what must
        # never happen is two sessions merging at the same time.
        active, starts = None, 0
        for line in dc.log_lines(r" (imap|pop3)\(tess\)<\d+>"):
            pid = int(re.search(r"\(tess\)<(\d+)>", line).group(1))
            if re.search(r"merge (started|resumed)", line):
                self.assertIsNone(active, "two sessions merging at once:\n" + line)
                active = pid
                starts += 1
            elif pid == active and re.search(r"merge paused|merge finished|Disconnected", line):
                active = None
        self.assertGreaterEqual(starts, 1)
        self.assertTrue(dc.log_lines(bftest.bf_log("tess") + "merge not started here: another session"),
                        "no session saw the lease taken: the test did not exercise concurrency")


if __name__ == "__main__":
    unittest.main(verbosity=2)

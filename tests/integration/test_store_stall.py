"""A stalled state store holds neither an IMAP session nor an LMTP delivery
for the store's own timeout (10 s for SQLite's busy timeout, timeout= for
Redis).

The login was bounded already (test_merge_locked_store); what came after it
was not:
- IMAP background slices: while another process holds the SQLite store's
  write lock, or Redis does not answer (SIGSTOP), the slice that commits a
  batch waited for it, and with it every command of the client.  Now each slice waits for the store at most
  backfill_login_budget in all, the merge stops with a line that says it
  is paused and when this session tries again, and it does: the merge
  finishes in the same session once the lock is gone, with the mailbox an
  uninterrupted merge gives (nothing lost, nothing twice).
- LMTP delivery confirmations (for the milter): the delivery waited for
  the store.  Now the confirmation gets backfill_confirm_timeout (300 ms
  here); one that cannot be written is logged and dropped, which is
  harmless (the milter delivers a later copy of that message tagged
  instead of removing it), and the delivery itself always succeeds.
- A store only busy (locked for under a second, then free) gets the
  confirmation written with the default backfill_confirm_timeout (2 s):
  the login budget (300 ms) that bounded it before dropped it, and the
  next repeat of that message reached the user.
- A store stalled for long costs one backfill_confirm_timeout, then the
  LMTP process's next confirmations for it wait only
  backfill_login_budget, and the first that gets through ends that.

The latencies measured are printed.  Before the fix a NOOP during the
stall took 40 s (the slice's write, recording the failure, releasing the
slot and the lease: 10 s each, SQLite's busy timeout or Redis's
timeout=10000, the stall lasting until the NOOPs end), a delivery 10 s
with the store locked or a Redis that never answers; after it about the
budget, plus closing the merge for a slice.
"""
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
import fingerprint_ref  # noqa: E402
import maildir_gen as mg  # noqa: E402
from redis_server import REDIS_SERVER, PrivateRedis  # noqa: E402
from test_merge_locked_store import LIB, LOCKER, SilentServer  # noqa: E402
import statedb  # noqa: E402

BUDGET = 0.3
# the budget, a slice, a begin again and a loaded test machine; far below
# what the store's own timeout gave (LOCK_SECS, 10 s)
SLACK = 1.2
# how long another process holds the store's write lock while the IMAP
# client works (the first retry comes 5 s after the stall)
LOCK_SECS = 4.0


def locked(db):
    """Another process holding the SQLite store's write lock (a backup, a
    doveadm run of another host's cron) until the returned Popen's stdin
    is closed."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", LOCKER, db, LIB],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "locked":
        p.kill()
        raise AssertionError("the locker did not lock: %r" % line)
    return p


def unlock(p):
    p.stdin.close()
    p.wait(timeout=30)
    p.stdout.close()


class ImapSlicesStalledStore(unittest.TestCase):
    USER = "sam"
    MESSAGES = 8000

    def setUp(self):
        self.site = bftest.Site(plugin={"backfill_login_budget": "300ms"})
        self.addCleanup(self.site.close)
        self.site.add_user(self.USER, mg.bulk_scenario(7, self.MESSAGES, 40, 20))
        self.site.start(plugin_on=False)
        self.pre = self.site.dc.snapshot(self.USER)
        self.site.enable_plugin(**self.store())

    def store(self):
        return {}

    def stall(self):
        """The store stalls until the returned function is called: another
        process holds the SQLite store's write lock."""
        locker = locked(os.path.join(self.site.state_dir, "state.db"))
        return lambda: unlock(locker)

    STALLED = r"locked.*after \d+ ms"

    def noop_latencies(self, c, secs):
        """NOOPs for secs (a client polling), each one's latency."""
        out, end = [], time.monotonic() + secs
        while time.monotonic() < end:
            t0 = time.monotonic()
            c.noop()
            out.append(time.monotonic() - t0)
            time.sleep(0.05)
        return out

    def test_stalled_store(self):
        site, user = self.site, self.USER
        c = site.dc.imap(user)
        # the merge goes on in background slices: commits at least once a
        # second, so the lock below catches one
        before = self.noop_latencies(c, 1.0)
        self.assertEqual(site.finished_lines(user), [], "merge finished before the stall")
        resume = self.stall()
        try:
            during = self.noop_latencies(c, LOCK_SECS)
        finally:
            resume()
        self.assertEqual(site.finished_lines(user), [], "merge finished before the stall")
        # the same session finishes the merge, without logging in again
        deadline = time.monotonic() + 180
        while not site.finished_lines(user) and time.monotonic() < deadline:
            c.noop()
            time.sleep(0.05)
        c.logout()
        print("%s: IMAP NOOP latency before the stall max %.3f s, during %d NOOPs with the"
              " store stalled for %.1f s max %.3f s" % (type(self).__name__, max(before),
                                                        len(during), LOCK_SECS, max(during)),
              file=sys.stderr)
        log = "\n".join(site.dc.log_lines(bftest.bf_log(user)))
        self.assertLess(max(during), BUDGET + SLACK,
                        "a slice waited for the locked store: %s\n%s"
                        % (["%.2f" % t for t in during], log))
        self.assertEqual(len(site.finished_lines(user)), 1, site.dc.log_tail())
        # what happened and what comes next
        self.assertRegex(log, r"merge paused in the background: .*" + self.STALLED +
                         r".*nothing is lost: this session tries again in 5 s")
        # nothing lost, nothing twice
        got = bftest.multiset(site.dc.snapshot(user))
        exp, _, _ = bftest.expected_after(self.pre, site.views[user])
        self.assertEqual(got, exp, bftest.diff(exp, got))
        rows, r = bd.doveadm_json(site.dc, "backfill", "verify", "-u", user)
        self.assertEqual(rows[0]["result"], "ok", r.stderr)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


class ImapSlicesHungRedis(ImapSlicesStalledStore):
    """The same with the store in Redis (timeout=10000 in the URI, as for a
    slow but healthy server), which stops answering (SIGSTOP)."""

    def store(self):
        if not os.path.exists(REDIS_SERVER):
            raise unittest.SkipTest("no redis-server")
        self.redis = PrivateRedis(self.site.base)
        self.addCleanup(self.redis.stop)
        return {"backfill_state": self.redis.uri + "?timeout=10000"}

    def stall(self):
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        return lambda: os.kill(self.redis.proc.pid, signal.SIGCONT)

    STALLED = r"no answer within \d+ ms"


def tagged(raw_body, subject, window="w1"):
    """A message as the milter passes it on: X-Backfill-Window and the
    fingerprint of the message itself (no secret configured: the
    fingerprint alone lets it confirm)."""
    raw = ("From: sender@example.net\r\nTo: lena@example.org\r\n"
           "Message-ID: <%s@example.net>\r\nSubject: %s\r\n\r\n%s\r\n"
           % (subject.replace(" ", "."), subject, raw_body)).encode()
    fp, _ = fingerprint_ref.fingerprint(raw)
    return (b"X-Backfill-Window: " + window.encode() + b"\r\n"
            b"X-Backfill-Fingerprint: v1:" + fp.encode() + b"\r\n" + raw), fp


class LmtpConfirmCase(bftest.SiteCase):
    """A site where the plugin only confirms deliveries (no tests here)."""
    USER = "lena"
    USER_EXTRA = ""

    @classmethod
    def build(cls, site):
        # no archive: the confirmation is all the plugin does for her
        site.dc.add_user(cls.USER, extra=cls.USER_EXTRA)
        site.dc.lmtp_plugins = "backfill"  # as conf.d/90-backfill.conf has it
        site.start(plugin_on=True)
        # the store exists
        bd.doveadm_json(site.dc, "backfill", "status", "-u", cls.USER)

    def db(self):
        return os.path.join(self.site.state_dir, "state.db")

    def inbox_count(self):
        return len(self.site.dc.snapshot(self.USER).get("INBOX", (0, []))[1])

    def deliver_timed(self, subject):
        raw, fp = tagged("body of " + subject, subject)
        n = self.inbox_count()
        t0 = time.monotonic()
        self.site.dc.lmtp_deliver(self.USER, raw)
        took = time.monotonic() - t0
        self.assertEqual(self.inbox_count(), n + 1, "the message is delivered")
        return took, fp

    def wait_log(self, pattern):
        deadline = time.monotonic() + 10
        while not self.site.dc.log_lines(pattern) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertTrue(self.site.dc.log_lines(pattern),
                        "\n".join(self.site.dc.log_tail().splitlines()[-30:]))

    def milter_record(self, fp, window="w1"):
        """The dedup record the milter writes when it passes a message on
        (the dedup table of shared/state-sqlite.c), not yet delivered."""
        now = int(time.time())
        db = statedb.connect(self.db(), timeout=10)
        try:
            with db:
                db.execute("INSERT INTO dedup (window_name, recipient, fingerprint,"
                           " first_seen, expires, host, queue_id)"
                           " VALUES (?, ?, ?, ?, ?, 'mx1', 'Q1')",
                           (window, self.USER, bytes.fromhex(fp), now, now + 3600))
        finally:
            db.close()

    def delivered(self, fp, window="w1"):
        """The record's delivered column: 1 once the delivery is confirmed."""
        db = statedb.connect(self.db(), readonly=True, timeout=10)
        try:
            row = db.execute("SELECT delivered FROM dedup WHERE window_name = ?"
                             " AND recipient = ? AND fingerprint = ?",
                             (window, self.USER, bytes.fromhex(fp))).fetchone()
        finally:
            db.close()
        self.assertIsNotNone(row, "the milter's record is gone")
        return row[0]

    def not_confirmed(self, fp):
        return self.site.dc.log_lines(r"delivery of v1:%s to %s not confirmed" % (fp, self.USER))


class LmtpConfirmStalledStore(LmtpConfirmCase):
    SITE = dict(plugin={"backfill_login_budget": "300ms",
                        "backfill_confirm_timeout": "300ms"})

    def test_locked_sqlite_store(self):
        site = self.site
        free, _ = self.deliver_timed("unlocked")
        locker = locked(os.path.join(site.state_dir, "state.db"))
        try:
            took, fp = self.deliver_timed("while locked")
        finally:
            unlock(locker)
        print("LMTP delivery: store free %.3f s, store locked %.3f s" % (free, took),
              file=sys.stderr)
        self.assertLess(took, BUDGET + SLACK, "the delivery waited for the locked store")
        self.wait_log(r"delivery of v1:%s to %s not confirmed for the milter: .*locked.*"
                      r"the message is delivered; a later copy of it is delivered too, tagged"
                      % (fp, self.USER))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])

    def test_silent_redis(self):
        site = self.site
        server = SilentServer()
        sqlite_uri = site.settings["backfill_state"]
        try:
            site.settings["backfill_state"] = ("redis://127.0.0.1:%d/0?timeout=10000"
                                               % server.port)
            site.dc.restart(plugin=site.settings)
            took, fp = self.deliver_timed("redis hangs")
        finally:
            site.settings["backfill_state"] = sqlite_uri
            site.dc.restart(plugin=site.settings)
            server.close()
        print("LMTP delivery: Redis that never answers %.3f s" % took, file=sys.stderr)
        self.assertLess(took, BUDGET + SLACK, "the delivery waited for a hung Redis")
        self.wait_log(r"delivery of v1:%s to %s not confirmed for the milter: .*redis.*"
                      r"no answer.*the message is delivered" % (fp, self.USER))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


# backfill_confirm_timeout's default (the milter's StoreTimeout)
CONFIRM_DEFAULT = 2.0
# how long the store stays locked after the message is saved, while its
# confirmation waits: more than the login budget, less than the default
BUSY_SECS = 0.6


class LmtpConfirmBusyStore(LmtpConfirmCase):
    """A store busy for under a second (a merge's checkpoint holding the
    SQLite write lock on a loaded host): the confirmation waits for it
    (default backfill_confirm_timeout) and is written."""
    SITE = dict(plugin={"backfill_login_budget": "300ms"})

    def test_busy_sqlite_store(self):
        site = self.site
        raw, fp = tagged("body of busy store", "busy store")
        self.milter_record(fp)
        new = os.path.join(site.dc.home(self.USER), "Maildir", "new")
        before = set(os.listdir(new)) if os.path.isdir(new) else set()
        errors = []

        def deliver():
            try:
                site.dc.lmtp_deliver(self.USER, raw)
            except BaseException as e:  # reported by the main thread
                errors.append(e)

        locker = locked(self.db())
        t0 = time.monotonic()
        th = threading.Thread(target=deliver)
        th.start()
        try:
            # the message is saved: its confirmation now waits for the store
            deadline = time.monotonic() + 60
            while (not (os.path.isdir(new) and set(os.listdir(new)) - before)
                   and th.is_alive() and time.monotonic() < deadline):
                time.sleep(0.01)
            saved = time.monotonic()
            time.sleep(BUSY_SECS)
        finally:
            unlock(locker)
        unlocked = time.monotonic()
        th.join(60)
        took = time.monotonic() - t0
        self.assertFalse(th.is_alive(), "the delivery hangs")
        self.assertEqual(errors, [])
        print("LMTP delivery: store locked %.3f s (%.3f s after the message was saved)"
              ", delivery %.3f s" % (unlocked - t0, unlocked - saved, took), file=sys.stderr)
        self.assertEqual(self.not_confirmed(fp), [], site.dc.log_tail())
        self.assertEqual(self.delivered(fp), 1,
                         "the confirmation is not in the store\n" + site.dc.log_tail())
        self.assertLess(took, CONFIRM_DEFAULT + SLACK)
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


class LmtpConfirmStalledTwice(LmtpConfirmCase):
    """A store stalled for long costs the first confirmation the whole
    backfill_confirm_timeout (here 3 s for the user, from the userdb), the
    next ones of the same LMTP process only backfill_login_budget; once the
    store answers again the next confirmation is written."""
    SITE = dict(plugin={"backfill_login_budget": "300ms"})
    USER_EXTRA = "userdb_backfill_confirm_timeout=3s"
    CONFIRM = 3.0

    def test_stalled_store_left_alone(self):
        site = self.site
        self.deliver_timed("store free")
        msgs = [tagged("body of %s" % s, s) for s in ("stalled 1", "stalled 2", "free again")]
        for _, fp in msgs:
            self.milter_record(fp)
        took = []
        # one LMTP session: one LMTP process delivers all three
        with smtplib.LMTP("127.0.0.1", site.dc.ports["lmtp"]) as s:
            locker = locked(self.db())
            try:
                for raw, _ in msgs[:2]:
                    t0 = time.monotonic()
                    s.sendmail("sender@example.org", [self.USER], raw)
                    took.append(time.monotonic() - t0)
            finally:
                unlock(locker)
            t0 = time.monotonic()
            s.sendmail("sender@example.org", [self.USER], msgs[2][0])
            took.append(time.monotonic() - t0)
        print("LMTP deliveries, store stalled: %.3f s, then %.3f s; store free again %.3f s"
              % tuple(took), file=sys.stderr)
        (_, fp1), (_, fp2), (_, fp3) = msgs
        self.assertGreaterEqual(took[0], self.CONFIRM - 0.1,
                                "the first confirmation did not wait for the store")
        self.assertLess(took[0], self.CONFIRM + SLACK)
        self.assertLess(took[1], BUDGET + SLACK,
                        "the second confirmation waited the whole timeout again")
        self.wait_log(r"delivery of v1:%s to %s not confirmed for the milter: .*locked.*"
                      r"delivered too, tagged, instead of being dropped; for 30 s this "
                      r"process's confirmations wait for this store only "
                      r"backfill_login_budget=300ms" % (fp1, self.USER))
        self.wait_log(r"delivery of v1:%s to %s not confirmed for the milter: .*locked"
                      % (fp2, self.USER))
        self.assertEqual(self.delivered(fp3), 1, site.dc.log_tail())
        self.assertEqual(self.not_confirmed(fp3), [])
        self.assertEqual([self.delivered(fp1), self.delivered(fp2)], [0, 0])
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

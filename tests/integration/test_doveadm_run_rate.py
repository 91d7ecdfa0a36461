"""doveadm backfill run --rate after a stall: the state store is locked
by another writer for 5 s when the run starts, as a busy store or a slow
disk does during a login storm.  The run waits for it (doveadm has no login
budget), and must then go on at the rate asked for, not make up the time
it waited by copying at full speed: --rate is what an operator uses to
keep the restore from starving the live mail of disk time.

Observed as the size of the first batch: at --rate 50 a batch commits by
age (1 s) with 50 to 100 messages (a 20 ms slice copies up to about 50
before the run sleeps); a run that makes up 5 s fills a whole batch (200,
the archive is not hardlinkable) at once.  The run kills
itself between that batch's mailbox commit and its checkpoint
(BACKFILL_TEST_CRASH=batch-committed:1), so dovecot-uidlist holds exactly
the first batch beyond the user's own mail.  Before the fix: 200."""
import os
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import bfdoveadm as bd  # noqa: E402
from bftest import mg  # noqa: E402
import statedb  # noqa: E402

N_ARCHIVE = 700
N_LIVE = 40
BATCH = 200  # BACKFILL_BATCH_MAX
RATE = 50
STALL_SECS = 5


class RateAfterStall(bftest.SiteCase):
    SITE = dict(extra_conf=bftest.CRASH_CONF)

    @classmethod
    def build(cls, site):
        scen = mg.bulk_scenario(37, N_ARCHIVE, N_LIVE, 0, folders=("INBOX",),
                                lines=4, multipart_share=0.02)
        site.add_user("paced", scen, record=False)
        site.start(plugin_on=False)
        # the store exists (status creates it), the merge is pending
        rows, _ = bd.doveadm_json(site.dc, "backfill", "status", "-u", "paced")
        assert rows[0]["state"] == "pending", rows

    def first_batch(self, user):
        path = os.path.join(self.site.dc.maildir(user), "dovecot-uidlist")
        with open(path) as f:
            return len(f.readlines()) - 1 - N_LIVE

    def test_no_burst_after_stall(self):
        db = statedb.connect(os.path.join(self.site.state_dir, "state.db"),
                             isolation_level=None, timeout=5,
                             check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")  # other writers wait
        released = threading.Event()

        def release():
            time.sleep(STALL_SECS)
            db.execute("COMMIT")
            released.set()
        t = threading.Thread(target=release)
        t.start()
        env = dict(os.environ, BACKFILL_TEST_CRASH="batch-committed:1")
        started = time.monotonic()
        r = subprocess.run(bd.doveadm_argv(self.site.dc, "backfill", "run",
                                           "--rate", str(RATE), "-u", "paced",
                                           fmt="json"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           env=self.site.dc.sanitizer_env(env), check=False)
        took = time.monotonic() - started
        t.join()
        db.close()
        bftest.remove_locks(self.site.dc, "paced")
        self.assertEqual(r.returncode, -signal.SIGKILL, r.stderr[-2000:])
        # the stall happened inside the run, or the test proves nothing
        self.assertTrue(released.is_set())
        self.assertGreater(took, STALL_SECS, "the run did not wait for the store")
        landed = self.first_batch("paced")
        print("\nfirst batch after a %.1f s stall at --rate %d: %d messages "
              "(run took %.1f s)" % (STALL_SECS, RATE, landed, took),
              file=sys.stderr)
        self.assertGreater(landed, 0)
        self.assertLess(landed, BATCH,
                        "the run made up the stall at full speed")


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""No maintenance window: mail keeps arriving over LMTP while a user's
merge runs in the background of an IMAP session (brief, "What backfill
does"). Nothing delivered may be lost or merged away, and the archive is
still merged exactly.

Deliveries during the merge: new messages, and redeliveries of archived
INBOX messages (a secondary MX flushing its queue). A redelivered message
that arrives before the merge reaches its archived copy makes that copy a
duplicate (1 in the end); one that arrives after it gives 2 (the milter's
job, not the merge's): both are correct, nothing else is.
"""
import collections
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402


class MergeLiveDelivery(bftest.SiteCase):
    SITE = dict(plugin={"backfill_login_budget": "50ms"})

    @classmethod
    def build(cls, site):
        cls.scen = mg.bulk_scenario(51, 8000, 100, 0, lines=3, multipart_share=0.0)
        site.add_user("lena", cls.scen)
        site.dc.lmtp_plugins = "backfill"  # as conf.d/90-backfill.conf has it
        site.start(plugin_on=False)
        cls.pre = site.dc.snapshot("lena")
        site.enable_plugin()

    def test_deliveries_during_merge(self):
        site, user = self.site, "lena"
        gen = mg.Generator(52)
        new = [gen.message(1700100000 + i, to=user) for i in range(30)]
        inbox = self.scen.archive[0].msgs  # bulk_scenario: INBOX first
        again = [gen.redelivered(m.raw) for m in inbox[::max(1, len(inbox) // 10)][:10]]
        stop = threading.Event()
        logged_in = threading.Event()
        errors = []

        def keep_busy():
            try:
                c = site.dc.imap(user)
                logged_in.set()
                while not stop.is_set() and not site.finished_lines(user):
                    c.noop()
                    time.sleep(0.02)
                c.logout()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                logged_in.set()

        t = threading.Thread(target=keep_busy)
        t.start()
        try:
            # the merge has begun in the login (its budget) and goes on
            # in the session's background slices: a loaded machine may
            # take longer than the 0.1 s slept here before, and the
            # deliveries before the login counted as during the merge
            self.assertTrue(logged_in.wait(120), "the IMAP login did not return")
            self.assertTrue(site.dc.wait_log_lines(bftest.bf_log(user) + "merge started"),
                            site.dc.log_tail())
            during = 0
            for raw in [x for pair in zip(new, again + [None] * 30) for x in pair if x]:
                site.dc.lmtp_deliver(user, raw)
                if not site.finished_lines(user):
                    during += 1
        finally:
            stop.set()
            t.join(60)
        self.assertEqual(errors, [])
        print("\n%d of 40 deliveries during the merge" % during, file=sys.stderr)
        self.assertGreaterEqual(during, 10, "the merge was over before most deliveries: "
                                "the test shows nothing")
        site.wait_merged(user)
        post = site.dc.snapshot(user)
        got = collections.Counter((f, m.fingerprint) for f, (_, ms) in post.items() for m in ms)
        fp_new = [mg.fingerprint_ref.fingerprint(r)[0] for r in new]
        fp_again = {mg.fingerprint_ref.fingerprint(r)[0] for r in again}
        for fp in fp_new:
            self.assertEqual(got[("INBOX", fp)], 1, "a delivered message is missing or doubled")
        for fp in fp_again:
            self.assertIn(got[("INBOX", fp)], (1, 2))
        exp, _, _ = bftest.expected_after(self.pre, site.views[user])
        exp = collections.Counter(k for k in exp if k[1] not in fp_again)
        post_keys = collections.Counter(
            k for k in bftest.multiset(post) if k[1] not in fp_again and k[1] not in fp_new)
        self.assertEqual(post_keys, exp, bftest.diff(list(exp.elements()), list(post_keys.elements())))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal|Error)\b"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""backfill_max_parallel: merges running at once on this host (issue 3:
"if either [lease or host slot] is taken it logs one info line and lets the
login go on (the next login retries)").

With backfill_max_parallel = 1, a second user logging in while the first
one's merge runs gets a normal login, an info line, and an untouched
mailbox; a later login, once the slot is free, merges it exactly.
"""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402


class MergeSlots(bftest.SiteCase):
    SITE = dict(plugin={"backfill_max_parallel": "1",
                        "backfill_login_budget": "50ms"})

    @classmethod
    def build(cls, site):
        site.add_user("ada", mg.bulk_scenario(81, 6000, 50, 20, lines=3, multipart_share=0.0),
                      record=False)
        site.add_user("ben", mg.standard_scenario(82))
        site.start(plugin_on=False)
        cls.pre_ben = site.dc.snapshot("ben")
        site.enable_plugin()

    def test_second_user_waits_for_a_slot(self):
        site = self.site
        started = threading.Event()
        errors = []

        def ada():
            try:
                c = site.dc.imap("ada")
                started.set()
                while not site.finished_lines("ada"):
                    c.noop()
                    time.sleep(0.02)
                c.logout()
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
                started.set()

        t = threading.Thread(target=ada)
        t.start()
        try:
            started.wait(60)
            time.sleep(0.2)
            self.assertFalse(site.finished_lines("ada"), "ada's merge was too short to test")
            c = site.dc.imap("ben")  # must succeed
            c.noop()
            c.logout()
            site.dc.pop3("ben").quit()
            busy = site.dc.wait_log_lines(bftest.bf_log("ben") +
                                          ".*merge slots of this host are busy")
            self.assertTrue(busy, "\n".join(site.dc.log_lines(bftest.bf_log("ben"))))
            self.assertFalse(site.dc.log_lines(bftest.bf_log("ben") + "merge started"))
            self.assertEqual(bftest.multiset(site.dc.snapshot("ben")), bftest.multiset(self.pre_ben))
        finally:
            t.join(300)
        self.assertEqual(errors, [])
        self.assertTrue(site.finished_lines("ada"))
        site.wait_merged("ben")
        exp, _, _ = bftest.expected_after(self.pre_ben, site.views["ben"])
        got = bftest.multiset(site.dc.snapshot("ben"))
        self.assertEqual(got, exp, bftest.diff(exp, got))
        self.assertEqual(site.dc.log_lines(r"\b(Panic|Fatal)\b"), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

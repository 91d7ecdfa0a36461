"""Named events for Dovecot's statistics (docs/events.md): a login's merge
outcome is an event (backfill_merge_started, _finished, _postponed,
_failed, _skipped) that a metric { } block counts, read back from a real
Dovecot with `doveadm stats dump`."""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bftest  # noqa: E402
import maildir_gen as mg  # noqa: E402

EVENTS = ("backfill_merge_started", "backfill_merge_finished",
          "backfill_merge_postponed", "backfill_merge_failed",
          "backfill_merge_skipped", "backfill_delivery_confirmed")



def doc_metrics():
    """The metric { } blocks of docs/events.md, as an operator copies them."""
    with open(os.path.join(bftest.SRC, "docs", "events.md")) as f:
        text = f.read()
    block = text.split("```\n")[1]
    assert block.startswith("metric "), block
    return block


METRICS = doc_metrics()


class NamedEvents(bftest.SiteCase):
    SITE = dict(extra_conf=METRICS)

    @classmethod
    def build(cls, site):
        site.add_user("ok", mg.standard_scenario(91), record=False)
        site.add_user("nostore", mg.standard_scenario(92), record=False,
                      extra="userdb_backfill_state=sqlite:/nonexistent-backfill-dir/state.db")
        # an archive path that leaves the archive root: refused
        os.makedirs(os.path.join(site.archive_root, "outside"))
        os.symlink(site.base, os.path.join(site.archive_root, "outside", "Maildir"))
        site.dc.add_user("outside")
        site.start()

    def counts(self):
        r = self.site.dc.doveadm("-f", "tab", "stats", "dump")
        lines = r.stdout.decode().splitlines()
        head = lines[0].split("\t")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split("\t")))
            out[row["metric_name"]] = int(row["count"])
        return out

    def wait_count(self, name, n, timeout=30):
        deadline = time.time() + timeout
        got = None
        while time.time() < deadline:
            got = self.counts()
            if got.get(name, 0) >= n:
                return got
            time.sleep(0.3)
        self.fail("%s: %r, wanted %d" % (name, got, n))

    def test_login_outcomes(self):
        before = self.counts()
        for e in EVENTS:
            self.assertEqual(before.get(e), 0, before)
        self.site.wait_merged("ok")
        got = self.wait_count("backfill_merge_finished", 1)
        self.assertGreaterEqual(got["backfill_merge_started"], 1, got)

        c = self.site.dc.imap("nostore")
        c.logout()
        got = self.wait_count("backfill_merge_postponed", 1)

        c = self.site.dc.imap("outside")
        c.logout()
        got = self.wait_count("backfill_merge_failed", 1)
        # nothing else: no merge was skipped, and no mail came through LMTP
        self.assertEqual(got["backfill_merge_skipped"], 0, got)
        self.assertEqual(got["backfill_delivery_confirmed"], 0, got)


if __name__ == "__main__":
    unittest.main()

"""test_imap_clients.py's story (backfill_imap_uids=auto) with a phone
that opens folders the way K-9 Mail and Thunderbird for Android sync
them: EXAMINE (read-only), which caches UIDVALIDITY and UIDs like SELECT
but, by RFC 3501, leaves every message \\Recent, then the message list
(tests/lib/imapcache.py K9_LIST_ITEMS) and the bodies.  The user only
looks at the list (reading a mail makes K-9 open the folder read-write,
which a SELECT-phone covers).

The phone cached INBOX (4 live mails) and Drafts during the incident, so
auto must keep both live, exactly as with the SELECT-phone: the phone then
downloads only their restored mail.  Dovecot's \\Recent evidence does not
see an EXAMINE; the caching decisions its list fetch leaves in INBOX's
dovecot.index.cache do (docs/imap-caches.md, "The evidence"): INBOX's
reason is imap-examined.  Every check of the story runs, Sent (renumbered:
only LMTP filled it) included.  Before that evidence INBOX was renumbered
as a folder no client saw: the phone dropped its cache and downloaded all
32 messages instead of 28, mbsync did not refuse it, and five tests failed.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_imap_clients as tic  # noqa: E402


class ImapClientsExamine(tic.ImapClients):
    USERS = {"kim": ("auto", 4)}
    PHONE_EXAMINE = True
    CHECK = None

    def test_auto_saw_the_phone(self):
        """INBOX, which only an EXAMINE-phone opened, is not taken for a
        folder no IMAP client saw; Sent, which only LMTP filled, is."""
        row = self.status["kim"]
        reasons = dict(x.split("=", 1) for x in row.get("uid_way_reasons", "").split(",") if x)
        self.assertEqual(self.uid_ways(self.status, self.users["kim"]).get("INBOX"), "live")
        self.assertEqual(reasons.get("INBOX"), "imap-examined",
                         "auto would renumber INBOX, which the phone cached: %s" % row)
        self.assertNotIn(reasons.get("Sent"), ("imap-selected", "imap-examined", None), row)

if __name__ == "__main__":
    unittest.main(verbosity=2)

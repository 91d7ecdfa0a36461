#!/usr/bin/python3
"""Tags are authenticated where they are trusted (issue 16, item 2): the
Dovecot plugin confirms a delivery at LMTP only for the message it
delivers, and only with a tag this site's milters made.

A private milter (SecretFile, window open) checks message M for alice,
which leaves an unconfirmed record.  Then mail goes straight to a private
Dovecot's LMTP (the local sendmail path: no milter) with the plugin and
backfill_secret_file:
  - another message carrying M's X-Backfill-* fields, copied whole;
  - M itself with Window and Fingerprint but no tag;
  - M with a tag made with another secret;
none of which may confirm M's record; then M with the milter's own
fields confirms it.

Environment: BACKFILL_MILTER, BACKFILLCTL, BACKFILL_PLUGIN_DIR.
"""

import os
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

from dovecot import MAIL_GID, Dovecot  # noqa: E402
from milterclient import MilterClient, raw_message  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import make_traversable  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')
PLUGIN_DIR = os.environ.get('BACKFILL_PLUGIN_DIR', '')


M_HEADERS = [('Message-ID', '<real@example.net>'),
             ('From', 'sender@example.net'), ('To', 'alice@example.org'),
             ('Subject', 'the real message')]
M_BODY = b'The real body.\r\n'


class LmtpTagTest(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(PLUGIN_DIR,
                                           'lib95_backfill_plugin.so')):
            self.skipTest('no Dovecot plugin built')
        self.tmp = tempfile.mkdtemp(prefix='bf-lmtp-tags-')
        make_traversable(self.tmp)
        state_dir = os.path.join(self.tmp, 'state')
        os.mkdir(state_dir)
        os.chown(state_dir, 0, MAIL_GID)
        os.chmod(state_dir, 0o2770)
        state = 'sqlite:' + state_dir + '/state.db'
        secrets = {}
        for name, text in (('secret', 'the site secret, shared by all'),
                           ('other', 'another site, another secret')):
            path = secrets[name] = os.path.join(self.tmp, name)
            with open(path, 'w') as f:
                f.write(text + '\n')
            os.chown(path, 0, MAIL_GID)
            os.chmod(path, 0o640)
        self.milters = []
        for name in ('secret', 'other'):
            d = os.path.join(self.tmp, 'milter-' + name)
            os.mkdir(d)
            self.milters.append(PrivateMilter(
                MILTER, BACKFILLCTL, tmp=d, state=state,
                window='w1' if name == 'secret' else None,
                config=[f'SecretFile {secrets[name]}', 'Hostname mx1.test',
                        # as the shipped unit: see milterproc.ctl()
                        'UMask 007']))
            self.milters[-1].start()
        self.dovecot = Dovecot(
            name='lmtp-tags', plugin_dir=PLUGIN_DIR, lmtp_plugins='backfill',
            plugin={'backfill_state': state,
                    'backfill_secret_file': secrets['secret']})
        self.dovecot.add_user('alice')
        self.dovecot.start()

    def tearDown(self):
        self.dovecot.stop()
        for m in self.milters:
            m.stop()
        self.dovecot.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def through_milter(self, milter, qid):
        """M through a milter: the X-Backfill-* fields it adds."""
        client = MilterClient(milter.sock)
        try:
            reply, actions = client.message(
                '<sender@example.net>', ['<alice@example.org>'], M_HEADERS,
                [M_BODY], queue_id=qid)
        finally:
            client.close()
        self.assertEqual(reply, b'a', actions)
        return [(a[1], a[2]) for a in actions if a[0] == 'addheader']

    def delivered_records(self):
        out = self.milters[0].ctl('dedup', 'stats').stdout.split()
        return int(out[out.index('delivered') + 1])

    def deliver(self, headers, body, expect=None):
        """Delivers over LMTP; returns what Dovecot logged of it, once
        it shows expect.  The lmtp process logs through Dovecot's log
        process, so its lines reach the file after LMTP's reply, later
        on a loaded machine (a fixed 0.2 s was a guess)."""
        before = len(self.dovecot.log_text())
        self.dovecot.lmtp_deliver('alice@example.org', raw_message(headers, body))
        deadline = time.monotonic() + 60
        while True:
            log = self.dovecot.log_text()[before:]
            if expect is None or expect in log \
                    or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def test_only_the_milters_own_tag_confirms(self):
        tags = self.through_milter(self.milters[0], 'Q1')
        names = [n for n, _ in tags]
        self.assertEqual(names, ['X-Backfill-Window',
                                 'X-Backfill-Fingerprint', 'X-Backfill-Tag'])
        self.assertEqual(self.delivered_records(), 0)

        # another message carrying M's fields (sendmail, no milter)
        log = self.deliver(tags + [('Subject', 'something else'),
                                   ('Message-ID', '<forged@example.net>')],
                           b'Another body.\r\n',
                           'is not the delivered message')
        self.assertIn('is not the delivered message', log)
        self.assertEqual(self.delivered_records(), 0)

        # M itself, fingerprint right, without a tag
        log = self.deliver(tags[:2] + M_HEADERS, M_BODY,
                           'no X-Backfill-Tag made by this site')
        self.assertIn('no X-Backfill-Tag made by this site', log)
        self.assertEqual(self.delivered_records(), 0)

        # M with a tag of another secret (the window is shared: the
        # second milter sees it open in the same store)
        other = self.through_milter(self.milters[1], 'Q2')
        self.assertEqual(self.delivered_records(), 0)
        log = self.deliver(other + M_HEADERS, M_BODY,
                           'no X-Backfill-Tag made by this site')
        self.assertIn('no X-Backfill-Tag made by this site', log)
        self.assertEqual(self.delivered_records(), 0)

        # M as the milter passed it: confirmed
        # (confirmed before LMTP's reply: the record is the proof; a
        # refusal's warning would be logged with the delivery's line)
        log = self.deliver(tags + M_HEADERS, M_BODY, 'saved mail to')
        self.assertEqual(self.delivered_records(), 1)
        self.assertNotIn('not confirmed', log)


if __name__ == '__main__':
    unittest.main(verbosity=2)

#!/usr/bin/python3
"""End to end: a private primary Postfix with backfill-milter on a unix
socket delivers over LMTP to a private Dovecot; a second private Postfix
is a secondary MX relaying to the primary.  Messages go through the
primary, through both MXes (a sender that retried via the secondary), to
the secondary while the primary is down (queued, flushed later, and in
part also sent to the primary meanwhile), and to overlapping recipient
sets.  Afterwards every recipient has exactly one copy of each message,
sent = delivered + held for every message, nothing is left deferred, and
the X-Backfill-Fingerprint of every stored message equals the reference
fingerprint of the stored bytes.

Delivery confirmation: with BACKFILL_E2E_CONFIRM=1 and the Dovecot plugin
in BACKFILL_PLUGIN_DIR, Dovecot's LMTP loads the plugin, which records
deliveries, and the milter runs with ConfirmDelivery yes; otherwise
ConfirmDelivery no with MinAge 0.

Environment: BACKFILL_MILTER, BACKFILLCTL, BACKFILL_PLUGIN_DIR and
BACKFILL_E2E_CONFIRM (optional).
"""

import email
import email.policy
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import fingerprint_ref  # noqa: E402
from dovecot import MAIL_GID, Dovecot  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import POSTSUPER, Postfix, make_traversable  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')
PLUGIN_DIR = os.environ.get('BACKFILL_PLUGIN_DIR', '')
USERS = ['alice', 'bob', 'carol', 'dave', 'erin']
# The operator mailbox of QuarantineRecipient: where the copy of
# recipients removed from a partial duplicate goes.
QUARANTINE = 'quarantine'


def make_message(n, rcpts):
    to = ', '.join(f'{u}@example.org' for u in rcpts)
    return (f'Message-ID: <e2e-{n}@example.net>\r\n'
            f'Date: Sat, 21 Nov 2026 10:{n % 60:02d}:00 +0000\r\n'
            f'From: Sender <sender@example.net>\r\n'
            f'To: {to}\r\n'
            f'Subject: e2e message {n}\r\n'
            f'X-Backfill-Fingerprint: v1:{"0" * 64}\r\n'
            f'\r\n'
            f'Body of message {n}.\r\n'
            f'{"Some more text. " * (n % 7)}\r\n').encode()


def plugin_confirms():
    return os.environ.get('BACKFILL_E2E_CONFIRM') == '1' and \
        os.path.exists(os.path.join(PLUGIN_DIR, 'lib95_backfill_plugin.so'))


class PostfixE2E(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='bf-e2e-')
        make_traversable(self.tmp)
        self.confirm = plugin_confirms()
        milter_conf = ['SocketMode 0660', 'SocketGroup postfix',
                       'Hostname mx1.test',
                       'QuarantineRecipient %s@example.org' % QUARANTINE,
                       # as the shipped unit: see milterproc.ctl()
                       'UMask 007']
        if not self.confirm:
            milter_conf += ['ConfirmDelivery no', 'MinAge 0']
        # The store is shared with Dovecot's LMTP, which runs as the mail
        # user: a setgid directory of its group, as an operator would do.
        state_dir = os.path.join(self.tmp, 'state')
        os.mkdir(state_dir)
        os.chown(state_dir, 0, MAIL_GID)
        os.chmod(state_dir, 0o2770)
        self.milter = PrivateMilter(
            MILTER, BACKFILLCTL, tmp=self.tmp, config=milter_conf,
            window='e2e', state='sqlite:' + state_dir + '/state.db')
        self.milter.start()
        kw = {}
        if self.confirm:
            kw = dict(plugin_dir=PLUGIN_DIR, lmtp_plugins='backfill',
                      plugin={'backfill_state': self.milter.state})
        self.dovecot = Dovecot(name='e2e', **kw)
        for u in USERS + [QUARANTINE]:
            self.dovecot.add_user(u)
        self.dovecot.start()
        self.primary = Postfix(
            'mx1', relay_transport='lmtp:inet:127.0.0.1:%d'
            % self.dovecot.ports['lmtp'],
            milters='unix:' + self.milter.sock)
        self.primary.start()
        self.secondary = Postfix(
            'mx2', relay_transport='smtp:[127.0.0.1]:%d' % self.primary.port)
        self.secondary.start()

    def tearDown(self):
        for pf in (self.secondary, self.primary):
            pf.stop()
        self.dovecot.stop()
        if os.environ.get('KEEP_TMP'):
            shutil.copy(self.dovecot.log_path, self.tmp)
        rc = self.milter.stop()
        if rc != 0:
            print(self.milter.log_text(), file=sys.stderr)
        for pf in (self.secondary, self.primary):
            pf.cleanup()
        self.dovecot.cleanup()
        if os.environ.get("KEEP_TMP") is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("kept", self.tmp, self.primary.workdir, file=sys.stderr)
        self.assertEqual(rc, 0, 'milter did not stop cleanly')

    def stored(self, users=USERS):
        """[(user, raw)] of every message in every INBOX of users."""
        out = []
        for u in users:
            md = self.dovecot.maildir(u)
            for sub in ('new', 'cur'):
                d = os.path.join(md, sub)
                if not os.path.isdir(d):
                    continue
                for name in os.listdir(d):
                    with open(os.path.join(d, name), 'rb') as f:
                        out.append((u, f.read()))
        return out

    def send(self, mx, n, rcpts, conn=None):
        # The same message (headers naming all its recipients) whatever
        # envelope recipients this copy has.
        refused = mx.send('sender@example.net',
                          [f'{u}@example.org' for u in rcpts],
                          make_message(n, sorted(self.expected[n])),
                          conn=conn)
        self.assertEqual(refused, {})

    def test_every_recipient_gets_exactly_one_copy(self):
        rng = random.Random(5)
        expected = self.expected = {}   # n -> set of users
        held_expected = 0
        n = 0

        def new(rcpts):
            nonlocal n
            n += 1
            expected[n] = set(rcpts)
            return n

        # 1. Through the primary only.
        with self.primary.smtp() as conn:
            for _ in range(120):
                m = new(rng.sample(USERS, rng.randint(1, 3)))
                self.send(self.primary, m, sorted(expected[m]), conn)
        # 2. Through the primary, then again via the secondary (a sender
        #    that did not see the 250 and retried at the backup MX).
        both = []
        with self.primary.smtp() as conn:
            for _ in range(60):
                m = new(rng.sample(USERS, rng.randint(1, 3)))
                self.send(self.primary, m, sorted(expected[m]), conn)
                both.append(m)
        # Let the first copies be delivered (and confirmed, with the
        # plugin) before the repeats arrive.
        self.primary.wait_queue()
        with self.secondary.smtp() as conn:
            for m in both:
                self.send(self.secondary, m, sorted(expected[m]), conn)
        held_expected += len(both)
        # 3. Overlapping recipients: first to two, then to those two and
        #    a third via the secondary: only the third gets the repeat.
        overlap = []
        with self.primary.smtp() as conn:
            for _ in range(30):
                rcpts = rng.sample(USERS, 3)
                m = new(rcpts)
                self.send(self.primary, m, sorted(rcpts[:2]), conn)
                overlap.append((m, rcpts))
        self.primary.wait_queue()
        with self.secondary.smtp() as conn:
            for m, rcpts in overlap:
                self.send(self.secondary, m, sorted(rcpts), conn)
        self.secondary.wait_queue()
        self.primary.wait_queue()

        # 4. The primary is down: the secondary queues; some senders also
        #    retry at the primary once it is back, before the flush.
        self.primary.stop()
        queued = []
        with self.secondary.smtp() as conn:
            for _ in range(60):
                m = new(rng.sample(USERS, rng.randint(1, 3)))
                self.send(self.secondary, m, sorted(expected[m]), conn)
                queued.append(m)
        # The secondary would retry on its own once the primary is back,
        # racing the senders' direct retries below; an operator's "flush"
        # is what the test wants: the queued copies wait on hold until
        # then.
        self.secondary.wait_queue(lambda q: len(q) == 60 and all(
            m['queue_name'] in ('deferred', 'hold') for m in q))
        subprocess.run([POSTSUPER, '-c', self.secondary.config_dir, '-h',
                        'ALL'], check=True, capture_output=True)
        self.assertEqual(len(self.secondary.queue()), 60)
        self.primary.start()
        retried = queued[:30]
        with self.primary.smtp() as conn:
            for m in retried:
                self.send(self.primary, m, sorted(expected[m]), conn)
        self.primary.wait_queue()
        held_expected += len(retried)
        subprocess.run([POSTSUPER, '-c', self.secondary.config_dir, '-H',
                        'ALL'], check=True, capture_output=True)
        self.secondary.flush()
        self.secondary.wait_queue(timeout=180)
        self.primary.wait_queue(timeout=180)

        # Every copy that reached a mailbox, counted per (message, user).
        deadline = time.time() + 60
        want = sum(len(r) for r in expected.values())
        while time.time() < deadline and len(self.stored()) < want:
            time.sleep(0.3)
        stored = self.stored()
        copies = {}
        for user, raw in stored:
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            mid = msg['Message-ID']
            self.assertTrue(mid and mid.startswith('<e2e-'), mid)
            m = int(mid[len('<e2e-'):].split('@')[0])
            copies.setdefault(m, []).append(user)
            fps = msg.get_all('X-Backfill-Fingerprint')
            self.assertEqual(len(fps), 1, f'{mid}: {fps}')
            self.assertEqual(msg['X-Backfill-Window'], 'e2e')
            ref = 'v1:' + fingerprint_ref.fingerprint(raw)[0]
            self.assertEqual(fps[0], ref, f'{mid} for {user}')
            self.assertIsNone(msg['X-Backfill-Dedup'], mid)

        held = [q for q in self.primary.queue() if q['queue_name'] == 'hold']
        sent_pairs = sum(len(r) for r in expected.values())
        print(f'messages {n}, recipient copies wanted {sent_pairs}, '
              f'stored {len(stored)}, held {len(held)} '
              f'(expected {held_expected}), confirm delivery: '
              f'{"plugin" if self.confirm else "MinAge 0"}', file=sys.stderr)
        for m, users in expected.items():
            self.assertEqual(sorted(copies.get(m, [])), sorted(users),
                             f'message {m}')
        self.assertEqual(len(stored), sent_pairs)
        self.assertEqual(len(held), held_expected)
        # Nothing anywhere but the held duplicates.
        self.assertEqual([q for q in self.secondary.queue()], [])
        # The held copies are duplicates of delivered messages and are
        # recoverable: each names its recipients.
        for q in held:
            self.assertTrue(q['recipients'])
        log = self.milter.log_text()
        self.assertIn('held: duplicate for all', log)
        self.assertIn('removed recipient', log)
        # The copy of the recipients removed from each overlapping
        # message (step 3) is kept in the quarantine mailbox: one copy
        # per message, whatever the number removed.
        self.assertIn('this copy went to <%s@example.org>' % QUARANTINE, log)
        deadline = time.time() + 30
        while time.time() < deadline and \
                len(self.stored([QUARANTINE])) < len(overlap):
            time.sleep(0.2)
        kept = []
        for _, raw in self.stored([QUARANTINE]):
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            kept.append(int(msg['Message-ID'][len('<e2e-'):].split('@')[0]))
            self.assertEqual(msg['X-Backfill-Removed'],
                             '2 duplicate recipient(s) already delivered')
        self.assertEqual(sorted(kept), sorted(m for m, _ in overlap))
        # Held means recoverable: released, a held copy is delivered
        # (marked as the duplicate it is).
        q = held[0]
        rcpts = sorted(r['address'].split('@')[0] for r in q['recipients'])
        before = len(self.stored())
        subprocess.run([POSTSUPER, '-c', self.primary.config_dir, '-H',
                        q['queue_id']], check=True, capture_output=True)
        self.primary.flush()
        self.primary.wait_queue(lambda qq: len(
            [m for m in qq if m['queue_name'] == 'hold']) == len(held) - 1)
        self.primary.wait_queue()
        deadline = time.time() + 30
        while time.time() < deadline and \
                len(self.stored()) < before + len(rcpts):
            time.sleep(0.2)
        released = [(u, raw) for u, raw in self.stored()
                    if b'X-Backfill-Duplicate: held' in raw]
        self.assertEqual(sorted(u for u, _ in released), rcpts)

        if self.confirm:
            # Every delivery was confirmed by the plugin in LMTP.
            stats = self.milter.ctl('dedup', 'stats').stdout.split()
            self.assertEqual(stats[1], str(sent_pairs), stats)
            self.assertEqual(stats[3], str(sent_pairs), stats)
            self.assertNotIn('not confirmed', self.dovecot.log_text())
        # Postfix's queue ids reach the milter (macro {i} at end of data).
        self.assertNotIn(': ?: ', log)
        for q in held:
            self.assertIn('held: duplicate', log)
            self.assertIn(': %s: held' % q['queue_id'], log)


if __name__ == '__main__':
    unittest.main(verbosity=2)

#!/usr/bin/python3
"""A relay between our own MXs is the same delivery (issue 16, item 1),
end to end: two private Postfix MXs, each with its own backfill-milter,
one shared state store, a private Dovecot behind the primary over LMTP.
The secondary (mx2, its SMTP client bound to 127.0.0.2, the primary's
PeerList) relays to the primary (mx1).  Both milters share SecretFile.

1. New mail through the primary.
2. The primary is down: new mail queues at the secondary, and senders
   repeat some step-1 messages there (real repeats).
3. The primary stays down longer than MinAge; when it is back, senders
   retry some queued messages straight at it before the secondary's
   flush (the secondary then flushes mail the primary already took).
4. The secondary flushes.

Every recipient gets exactly one copy of each message; real repeats are
held (at whichever MX found them), nothing else; nothing is deferred;
sent = delivered + held for every message.

Environment: BACKFILL_MILTER, BACKFILLCTL, BACKFILL_PLUGIN_DIR;
BACKFILL_E2E_CONFIRM=1: the Dovecot plugin confirms deliveries in LMTP and
the milters run with ConfirmDelivery yes (else ConfirmDelivery no, MinAge
2s); BACKFILL_E2E_STORE=redis: a private redis-server instead of SQLite;
BACKFILL_E2E_NO_PEERS=1: without SecretFile and PeerList (what the
previous milter did: the flushed copies are held at the primary).
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

from dovecot import MAIL_GID, Dovecot  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from postfix import POSTSUPER, Postfix, make_traversable  # noqa: E402
from redis_server import REDIS_SERVER, PrivateRedis  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')
PLUGIN_DIR = os.environ.get('BACKFILL_PLUGIN_DIR', '')
USERS = ['alice', 'bob', 'carol', 'dave', 'erin']
MIN_AGE = 2
SECONDARY_ADDR = '127.0.0.2'


def make_message(n, rcpts):
    to = ', '.join(f'{u}@example.org' for u in rcpts)
    return (f'Message-ID: <relay-{n}@example.net>\r\n'
            f'From: Sender <sender@example.net>\r\n'
            f'To: {to}\r\n'
            f'Subject: relay message {n}\r\n'
            f'\r\n'
            f'Body of message {n}.\r\n').encode()


class RelayE2E(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='bf-relay-')
        make_traversable(self.tmp)
        self.confirm = os.environ.get('BACKFILL_E2E_CONFIRM') == '1'
        self.redis = None
        if os.environ.get('BACKFILL_E2E_STORE') == 'redis':
            if not os.path.exists(REDIS_SERVER):
                self.skipTest('no redis-server')
            self.redis = PrivateRedis(self.tmp)
            state = self.redis.uri
        else:
            state_dir = os.path.join(self.tmp, 'state')
            os.mkdir(state_dir)
            os.chown(state_dir, 0, MAIL_GID)
            os.chmod(state_dir, 0o2770)
            state = 'sqlite:' + state_dir + '/state.db'
        # Readable by the milters and by Dovecot's LMTP (mail group).
        self.secret = os.path.join(self.tmp, 'secret')
        with open(self.secret, 'w') as f:
            f.write('0d5e3c0a9b8f7e6d5c4b3a29181716151413121110\n')
        os.chown(self.secret, 0, MAIL_GID)
        os.chmod(self.secret, 0o640)
        common = ['SocketMode 0660', 'SocketGroup postfix']
        if not os.environ.get('BACKFILL_E2E_NO_PEERS'):
            common += [f'SecretFile {self.secret}',
                       f'PeerList {SECONDARY_ADDR}']
        if not self.confirm:
            common += ['ConfirmDelivery no', f'MinAge {MIN_AGE}s']
        self.milters = []
        for host in ('mx1', 'mx2'):
            d = os.path.join(self.tmp, host)
            os.mkdir(d)
            make_traversable(d)
            m = PrivateMilter(MILTER, BACKFILLCTL, tmp=d, state=state,
                              # as the shipped unit: see milterproc.ctl()
                              config=common + [f'Hostname {host}.test', 'UMask 007'],
                              window='relay' if host == 'mx1' else None)
            m.start()
            self.milters.append(m)
        kw = {}
        if self.confirm:
            kw = dict(plugin_dir=PLUGIN_DIR, lmtp_plugins='backfill',
                      plugin={'backfill_state': state,
                              'backfill_secret_file': self.secret})
        self.dovecot = Dovecot(name='relay', **kw)
        for u in USERS:
            self.dovecot.add_user(u)
        self.dovecot.start()
        self.primary = Postfix(
            'mx1', relay_transport='lmtp:inet:127.0.0.1:%d'
            % self.dovecot.ports['lmtp'],
            milters='unix:' + self.milters[0].sock)
        self.primary.start()
        self.secondary = Postfix(
            'mx2', relay_transport='smtp:[127.0.0.1]:%d' % self.primary.port,
            milters='unix:' + self.milters[1].sock,
            main={'smtp_bind_address': SECONDARY_ADDR})
        self.secondary.start()

    def tearDown(self):
        for pf in (self.secondary, self.primary):
            pf.stop()
        self.dovecot.stop()
        rcs = [m.stop() for m in self.milters]
        if rcs != [0, 0] or os.environ.get('KEEP_TMP'):
            for m in self.milters:
                print(m.log_text(), file=sys.stderr)
        for pf in (self.secondary, self.primary):
            pf.cleanup()
        self.dovecot.cleanup()
        if self.redis:
            self.redis.stop()
        if os.environ.get('KEEP_TMP') is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(rcs, [0, 0], 'a milter did not stop cleanly')

    def stored(self):
        out = []
        for u in USERS:
            md = self.dovecot.maildir(u)
            for sub in ('new', 'cur'):
                d = os.path.join(md, sub)
                if os.path.isdir(d):
                    for name in os.listdir(d):
                        with open(os.path.join(d, name), 'rb') as f:
                            out.append((u, f.read()))
        return out

    def send(self, mx, n, conn):
        rcpts = sorted(self.expected[n])
        refused = mx.send('sender@example.net',
                          [f'{u}@example.org' for u in rcpts],
                          make_message(n, rcpts), conn=conn)
        self.assertEqual(refused, {})
        self.sent[n] = self.sent.get(n, 0) + len(rcpts)

    def held(self, mx):
        return [q for q in mx.queue() if q['queue_name'] == 'hold']

    def test_each_recipient_one_copy(self):
        rng = random.Random(16)
        self.expected, self.sent = {}, {}
        for n in range(1, 61):
            self.expected[n] = set(rng.sample(USERS, rng.randint(1, 3)))

        # 1. through the primary
        with self.primary.smtp() as conn:
            for n in range(1, 21):
                self.send(self.primary, n, conn)
        self.primary.wait_queue()
        # 2. primary down: new mail queues at the secondary; senders
        #    repeat 10 step-1 messages there (after MinAge: confirmed)
        self.primary.stop()
        time.sleep(MIN_AGE + 0.5)
        with self.secondary.smtp() as conn:
            for n in range(21, 61):
                self.send(self.secondary, n, conn)
            for n in range(1, 11):
                self.send(self.secondary, n, conn)
        self.secondary.wait_queue(lambda q: len(
            [m for m in q if m['queue_name'] == 'deferred']) == 40)
        held_secondary = len(self.held(self.secondary))
        # The secondary's own retries would race the senders' direct
        # retries below: its queued copies wait on hold until the flush.
        queued = [m['queue_id'] for m in self.secondary.queue()
                  if m['queue_name'] == 'deferred']
        for qid in queued:
            subprocess.run([POSTSUPER, '-c', self.secondary.config_dir,
                            '-h', qid], check=True, capture_output=True)
        # 3. longer than MinAge down; back; 10 queued messages retried
        #    by their senders straight at the primary
        time.sleep(MIN_AGE + 0.5)
        self.primary.start()
        with self.primary.smtp() as conn:
            for n in range(21, 31):
                self.send(self.primary, n, conn)
        self.primary.wait_queue()
        # 4. the secondary flushes
        for qid in queued:
            subprocess.run([POSTSUPER, '-c', self.secondary.config_dir,
                            '-H', qid], check=True, capture_output=True)
        self.secondary.flush()
        self.secondary.wait_queue(timeout=180)
        self.primary.wait_queue(timeout=180)

        want = sum(len(r) for r in self.expected.values())
        deadline = time.time() + 60
        while time.time() < deadline and len(self.stored()) < want:
            time.sleep(0.3)
        time.sleep(1)
        copies = {}
        for user, raw in self.stored():
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
            m = int(msg['Message-ID'][len('<relay-'):].split('@')[0])
            copies.setdefault(m, []).append(user)
            self.assertIsNone(msg['X-Backfill-Dedup'], msg['Message-ID'])
        held_primary = self.held(self.primary)
        held_pairs = sum(len(q['recipients']) for q in held_primary +
                         self.held(self.secondary))
        delivered = sum(len(u) for u in copies.values())
        print(f'confirm: {self.confirm}, store: '
              f'{"redis" if self.redis else "sqlite"}: sent '
              f'{sum(self.sent.values())} recipient copies, delivered '
              f'{delivered}, held {held_pairs} (primary '
              f'{len(held_primary)} messages, secondary {held_secondary})',
              file=sys.stderr)
        for n, users in self.expected.items():
            self.assertEqual(sorted(copies.get(n, [])), sorted(users),
                             f'message {n}')
        # the real repeats: 10 at the secondary, 10 at the primary (the
        # senders' direct retry, or the flushed copy of what the primary
        # already took, depending on the mode)
        self.assertEqual(held_secondary, 10)
        self.assertEqual(len(held_primary), 10)
        self.assertEqual(sum(self.sent.values()), delivered + held_pairs)
        for pf in (self.primary, self.secondary):
            self.assertEqual([q for q in pf.queue()
                              if q['queue_name'] != 'hold'], [])


if __name__ == '__main__':
    unittest.main(verbosity=2)

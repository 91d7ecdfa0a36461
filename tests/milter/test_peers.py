#!/usr/bin/python3
"""A message relayed between our own MXs is the same delivery, not a
repeat (issue 16, item 1), at the protocol level: three milters (mx1,
mx2, mx3) share one SQLite store, SecretFile and PeerList; ConfirmDelivery
no with MinAge 0, so that any record older than the message would make
it a confirmed duplicate.  What the secondary (mx2) adds to a message is
passed on to the primary (mx1) as Postfix would relay it; the client
address is Postfix's {client_addr} macro.

Checked: a message mx2 checked is new at mx1 and at mx3 after it (a
chain); the same tag from a client outside PeerList, with a MAC of
another secret, or on a changed message, proves nothing (held); a real
repeat (a sender's retry at mx2, mx2 flushing what mx1 already took) is
still held at mx1.

Environment: BACKFILL_MILTER and BACKFILLCTL (paths of the built binaries).
"""

import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from milterclient import MilterClient  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')
PEER = '127.0.0.2'
OUTSIDE = '192.0.2.7'


def write_secret(path, text):
    with open(path, 'w') as f:
        f.write(text + '\n')
    os.chmod(path, 0o640)


class PeerRelayTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix='bf-peers-')
        secret = os.path.join(cls.tmp.name, 'secret')
        write_secret(secret, 'a2f0c1d9e8b7a6c5d4e3f2a1b0c9d8e7f6')
        cls.other_secret = os.path.join(cls.tmp.name, 'other-secret')
        write_secret(cls.other_secret, 'not the site secret, another one')
        state = 'sqlite:' + os.path.join(cls.tmp.name, 'state.db')
        common = ['ConfirmDelivery no', 'MinAge 0', f'SecretFile {secret}',
                  f'PeerList 127.0.0.0/29, ::1 # our MXs']
        cls.milters = {}
        for host in ('mx1', 'mx2', 'mx3', 'mx4', 'mx5'):
            d = os.path.join(cls.tmp.name, host)
            os.mkdir(d)
            conf = common + [f'Hostname {host}.test']
            if host == 'mx4':   # a milter keyed with another secret
                conf[2] = f'SecretFile {cls.other_secret}'
            if host == 'mx5':   # one PeerList line per MX
                conf[3:4] = ['PeerList 127.0.0.2', 'PeerList 192.0.2.25',
                             'PeerList 2001:db8::25']
            cls.milters[host] = PrivateMilter(
                MILTER, BACKFILLCTL, config=conf, tmp=d, state=state,
                window='restore-1' if host == 'mx1' else None)
            cls.milters[host].start()

    @classmethod
    def tearDownClass(cls):
        bad = []
        for host, m in cls.milters.items():
            rc = m.stop()
            if rc != 0:
                bad.append(f'{host}: {rc}\n{m.log_text()}')
        cls.tmp.cleanup()
        if bad:
            raise AssertionError('milter did not stop cleanly: ' +
                                 '\n'.join(bad))

    def send(self, host, n, rcpts, qid, extra=(), client_addr=OUTSIDE,
             subject=None):
        headers = list(extra) + [
            ('Message-ID', f'<peer{n}@example.net>'),
            ('From', 'sender@example.net'),
            ('Subject', subject or f'relayed {n}')]
        client = MilterClient(self.milters[host].sock)
        try:
            reply, actions = client.message(
                '<sender@example.net>', rcpts, headers, [b'body\r\n'],
                queue_id=qid, client_addr=client_addr)
        finally:
            client.close()
        self.assertEqual(reply, b'a', actions)
        return actions

    @staticmethod
    def relayed(actions):
        """The X-Backfill-* fields a milter added, as the next MX
        receives them."""
        return [(a[1], a[2]) for a in actions if a[0] == 'addheader']

    @staticmethod
    def verdict(actions):
        kinds = [a[0] for a in actions]
        if 'quarantine' in kinds:
            return 'held'
        if 'delrcpt' in kinds:
            return 'removed'
        dup = MilterClient.added(actions, 'X-Backfill-Duplicate')
        return dup or 'new'

    def test_relay_is_the_same_delivery(self):
        rcpts = ['<alice@example.org>', '<bob@example.org>']
        at_mx2 = self.send('mx2', 1, rcpts, 'MX2Q1')
        self.assertEqual(self.verdict(at_mx2), 'new')
        tags = [v for k, v in self.relayed(at_mx2) if k == 'X-Backfill-Tag']
        self.assertEqual(len(tags), 1, at_mx2)
        self.assertTrue(tags[0].startswith('host=mx2.test; qid=MX2Q1; mac='))
        # mx2 flushes its queue to mx1 later (MinAge 0: any record older
        # than this copy would be a confirmed duplicate)
        at_mx1 = self.send('mx1', 1, rcpts, 'MX1Q1',
                           self.relayed(at_mx2), client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'new', at_mx1)
        self.assertIn('2 recipient(s) already checked by peer mx2.test',
                      self.milters['mx1'].log_text())
        # mx1's own tag and mx2's go on: a third MX knows both
        out = [v for k, v in self.relayed(at_mx1) if k == 'X-Backfill-Tag']
        self.assertEqual(len(out), 2, at_mx1)
        at_mx3 = self.send('mx3', 1, rcpts, 'MX3Q1',
                           self.relayed(at_mx1), client_addr=PEER)
        self.assertEqual(self.verdict(at_mx3), 'new', at_mx3)
        # every incoming X-Backfill-* field was removed at each hop
        deleted = [a[2] for a in at_mx3 if a[0] == 'chgheader']
        self.assertIn('X-Backfill-Tag', deleted)

    def test_same_relay_twice_is_a_repeat(self):
        # mx2 flushes a copy to mx1, loses mx1's reply to its DATA and
        # sends the same copy (same queue id, same tag) again: the second
        # one is a repeat of the first flush, not the same delivery again
        # (it was delivered twice: the record of mx2's copy is never
        # marked delivered with ConfirmDelivery no).
        rcpts = ['<ivan@example.org>', '<judy@example.org>']
        at_mx2 = self.send('mx2', 11, rcpts, 'MX2Q11')
        first = self.send('mx1', 11, rcpts, 'MX1Q11', self.relayed(at_mx2),
                          client_addr=PEER)
        self.assertEqual(self.verdict(first), 'new', first)
        again = self.send('mx1', 11, rcpts, 'MX1Q11b', self.relayed(at_mx2),
                          client_addr=PEER)
        self.assertEqual(self.verdict(again), 'held', again)
        self.assertIn('first copy queue id MX1Q11 on mx1.test',
                      self.milters['mx1'].log_text())
        # the chain mx2 -> mx3 -> mx1 is one delivery (mx3 took mx2's
        # relay first).
        rcpts = ['<kim@example.org>']
        at_mx2 = self.send('mx2', 12, rcpts, 'MX2Q12')
        at_mx3 = self.send('mx3', 12, rcpts, 'MX3Q12', self.relayed(at_mx2),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx3), 'new', at_mx3)
        at_mx1 = self.send('mx1', 12, rcpts, 'MX1Q12', self.relayed(at_mx3),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'new', at_mx1)
        # The relay check is one hop deep: mx3 sending its copy again is
        # delivered again (mx3's tag is on it, and the relay record of
        # mx2's copy is mx3's), a duplicate, never a loss
        # (backfill-milter.conf(5), PeerList).
        again = self.send('mx1', 12, rcpts, 'MX1Q12c', self.relayed(at_mx3),
                          client_addr=PEER)
        self.assertEqual(self.verdict(again), 'new', again)
        # mx2 sending its copy to mx1 as well, besides through mx3: a
        # repeat of the relay mx3 took
        at_mx1 = self.send('mx1', 12, rcpts, 'MX1Q12b',
                           self.relayed(at_mx2), client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)

    def test_peer_list_lines_add_up(self):
        # The peer in the first of three PeerList lines is still a peer:
        # a later line replaced the earlier ones, and mx2's flushed copy
        # was held at mx5 as a repeat of itself.
        rcpts = ['<heidi@example.org>']
        at_mx2 = self.send('mx2', 9, rcpts, 'MX2Q9')
        at_mx5 = self.send('mx5', 9, rcpts, 'MX5Q9', self.relayed(at_mx2),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx5), 'new', at_mx5)
        # and the last line too
        at_mx2 = self.send('mx2', 10, rcpts, 'MX2Q10')
        at_mx5 = self.send('mx5', 10, rcpts, 'MX5Q10', self.relayed(at_mx2),
                           client_addr='IPv6:2001:db8::25')
        self.assertEqual(self.verdict(at_mx5), 'new', at_mx5)

    def test_tag_from_outside_proves_nothing(self):
        rcpts = ['<carol@example.org>']
        at_mx2 = self.send('mx2', 2, rcpts, 'MX2Q2')
        at_mx1 = self.send('mx1', 2, rcpts, 'MX1Q2', self.relayed(at_mx2),
                           client_addr=OUTSIDE)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)
        # no client address at all (an MTA that does not send it)
        at_mx1 = self.send('mx1', 2, rcpts, 'MX1Q2b', self.relayed(at_mx2),
                           client_addr=None)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)

    def test_tag_of_another_secret_or_message_proves_nothing(self):
        rcpts = ['<dave@example.org>']
        at_mx4 = self.send('mx4', 3, rcpts, 'MX4Q3')
        self.assertEqual(self.verdict(at_mx4), 'new')
        at_mx1 = self.send('mx1', 3, rcpts, 'MX1Q3', self.relayed(at_mx4),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)
        self.assertIn('does not hold for this message',
                      self.milters['mx1'].log_text())
        # a valid tag moved onto another message
        at_mx2 = self.send('mx2', 4, rcpts, 'MX2Q4')
        self.send('mx1', 5, rcpts, 'MX1Q5')
        at_mx1 = self.send('mx1', 5, rcpts, 'MX1Q5b', self.relayed(at_mx2),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)

    def test_real_repeats_still_caught(self):
        rcpts = ['<erin@example.org>']
        # mx1 took the message first; a sender's retry at mx2 is
        # flushed to mx1 later: the record is mx1's own, not mx2's
        self.assertEqual(self.verdict(self.send('mx1', 6, rcpts, 'MX1Q6')),
                         'new')
        at_mx2 = self.send('mx2', 6, rcpts, 'MX2Q6')
        self.assertEqual(self.verdict(at_mx2), 'held')
        at_mx1 = self.send('mx1', 6, rcpts, 'MX1Q6b', self.relayed(at_mx2),
                           client_addr=PEER)
        self.assertEqual(self.verdict(at_mx1), 'held', at_mx1)
        # mx2 took it twice (a retry there): its second copy relayed
        # carries a tag of its own, but the record is of the first
        rcpts = ['<frank@example.org>']
        first = self.send('mx2', 7, rcpts, 'MX2Q7')
        self.assertEqual(self.verdict(first), 'new')
        second = self.send('mx2', 7, rcpts, 'MX2Q7b')
        self.assertEqual(self.verdict(second), 'held')
        self.assertEqual(self.verdict(self.send(
            'mx1', 7, rcpts, 'MX1Q7', self.relayed(first),
            client_addr=PEER)), 'new')
        self.assertEqual(self.verdict(self.send(
            'mx1', 7, rcpts, 'MX1Q7b', self.relayed(second),
            client_addr=PEER)), 'held')
        # mx2 took it; a copy was delivered meanwhile (a sender's retry
        # straight to mx1 while mx2 still queued its own, confirmed by the
        # plugin): mx2's copy flushed later is the repeat
        rcpts = ['<grace@example.org>']
        at_mx2 = self.send('mx2', 8, rcpts, 'MX2Q8')
        fp = MilterClient.added(at_mx2, 'X-Backfill-Fingerprint')
        self.milters['mx1'].ctl('dedup', 'mark-delivered', 'restore-1',
                                'grace@example.org', fp)
        self.assertEqual(self.verdict(self.send(
            'mx1', 8, rcpts, 'MX1Q8', self.relayed(at_mx2),
            client_addr=PEER)), 'held')


class PeerConfigTest(unittest.TestCase):
    def check(self, lines):
        with tempfile.TemporaryDirectory(prefix='bf-peers-conf-') as tmp:
            conf = os.path.join(tmp, 'milter.conf')
            secret = os.path.join(tmp, 'secret')
            write_secret(secret, 'x' * 32)
            with open(conf, 'w') as f:
                f.write('\n'.join(lines).replace('SECRET', secret) + '\n')
            import subprocess
            r = subprocess.run([MILTER, '-n', '-c', conf],
                               capture_output=True, text=True)
            return r.returncode, r.stderr

    def test_config(self):
        self.assertEqual(self.check(['SecretFile SECRET',
                                     'PeerList 10.0.0.1, 2001:db8::/32'])[0],
                         0)
        rc, err = self.check(['PeerList 10.0.0.1'])
        self.assertEqual(rc, 2)
        self.assertIn('PeerList needs SecretFile', err)
        rc, err = self.check(['SecretFile SECRET', 'PeerList mx2.example'])
        self.assertEqual(rc, 2)
        self.assertIn('not an IPv4 or IPv6 address', err)
        rc, err = self.check(['SecretFile SECRET', 'PeerList 10.0.0.0/33'])
        self.assertEqual(rc, 2)
        with tempfile.TemporaryDirectory() as tmp:
            weak = os.path.join(tmp, 'weak')
            write_secret(weak, 'short')
            rc, err = self.check([f'SecretFile {weak}'])
            self.assertEqual(rc, 2)
            self.assertIn('shorter than 16 bytes', err)
            os.chmod(weak, 0o644)
            rc, err = self.check([f'SecretFile {weak}'])
            self.assertIn('readable by everyone', err)


if __name__ == '__main__':
    unittest.main(verbosity=2)

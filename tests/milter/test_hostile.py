#!/usr/bin/python3
"""Hostile headers cost the milter linear time and bounded memory
(issue 16, item 3): a flood of X-Backfill-* fields is refused with a
clear SMTP reply before it can outlast Postfix's milter timeout, a flood
of other fields streams through, and thousands of large To: fields are
not kept (the message is accepted unchecked and the memory goes back).
RSS is read from /proc while the milter runs.

Environment: BACKFILL_MILTER and BACKFILLCTL (paths of the built binaries).
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import fingerprint_ref  # noqa: E402
from milterclient import MilterClient, raw_message  # noqa: E402
from milterproc import SANITIZED, PrivateMilter  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')

FLOOD = 100000
# Generous for a loaded 2-CPU machine: the quadratic search of before
# took 18.6 s of CPU for the forged flood alone, 61 s in all here.  The
# sanitizers make every header packet about three times as slow.
FLOOD_SECONDS = 30 if SANITIZED else 10


class HostileHeadersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.milter = PrivateMilter(MILTER, BACKFILLCTL, window='restore-1',
                                   config=['LogLevel info'])
        cls.milter.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.milter.stop()
        log = cls.milter.log_text()
        cls.milter.__exit__(None, None, None)
        if rc != 0:
            raise AssertionError(f'milter did not stop cleanly ({rc}):\n{log}')

    def send(self, client, headers, qid, body=b'body\r\n'):
        t0 = time.monotonic()
        reply, actions = client.message('<sender@example.net>',
                                        ['<alice@example.org>'], headers,
                                        [body], queue_id=qid)
        return reply, actions, time.monotonic() - t0

    def warm(self, client):
        reply, _, _ = self.send(client, [('Subject', 'warm-up')], 'WARM')
        self.assertEqual(reply, b'a')
        return self.milter.rss_kb()

    def test_forged_flood_refused_in_time(self):
        client = MilterClient(self.milter.sock)
        try:
            base = self.warm(client)
            headers = [('Subject', 'flood')] + [
                (f'X-Backfill-Flood-{i}', 'v1:forged') for i in range(FLOOD)]
            reply, actions, secs = self.send(client, headers, 'FLOOD1')
            after = self.milter.rss_kb()
            reply_text = client.reply_data
        finally:
            client.close()
        print(f'{FLOOD} distinct X-Backfill-* fields: {secs:.2f} s, RSS '
              f'{base} -> {after} kB', file=sys.stderr)
        self.assertEqual(reply, b'y', actions)
        self.assertTrue(reply_text.startswith(b'550 5.7.1 '), reply_text)
        self.assertIn(b'X-Backfill-', reply_text)
        self.assertEqual(actions, [])
        self.assertLess(secs, FLOOD_SECONDS)
        if not SANITIZED:
            self.assertLess(after - base, 4096)
        self.assertIn('FLOOD1: rejected', self.milter.log_text())

    def test_one_forged_name_repeated_is_refused(self):
        client = MilterClient(self.milter.sock)
        try:
            headers = [('X-Backfill-Fingerprint', 'v1:' + '0' * 64)] * 101
            reply, actions, _ = self.send(client, headers, 'REPEAT1')
        finally:
            client.close()
        self.assertEqual(reply, b'y', actions)

    def test_forged_up_to_the_cap_are_removed(self):
        client = MilterClient(self.milter.sock)
        try:
            headers = [(f'X-Backfill-Name{i % 10}', 'forged')
                       for i in range(100)]
            reply, actions, _ = self.send(client, headers, 'CAP1')
        finally:
            client.close()
        self.assertEqual(reply, b'a', actions)
        deletes = [a for a in actions if a[0] == 'chgheader' and a[3] == '']
        self.assertEqual(len(deletes), 100, actions)
        self.assertIsNotNone(MilterClient.added(actions,
                                                'X-Backfill-Fingerprint'))

    def test_flood_of_other_fields_streams(self):
        headers = [('Message-ID', '<other-flood@example.net>'),
                   ('Subject', 'other flood')] + [
            (f'X-Flood-{i}', 'value') for i in range(FLOOD)]
        body = b'flood body\r\n'
        client = MilterClient(self.milter.sock)
        try:
            base = self.warm(client)
            reply, actions, secs = self.send(client, headers, 'OTHER1', body)
            after = self.milter.rss_kb()
        finally:
            client.close()
        print(f'{FLOOD} distinct other fields: {secs:.2f} s, RSS '
              f'{base} -> {after} kB', file=sys.stderr)
        self.assertEqual(reply, b'a', actions)
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Fingerprint'),
                         'v1:' + fingerprint_ref.fingerprint(
                             raw_message(headers, body))[0])
        self.assertLess(secs, FLOOD_SECONDS)
        if not SANITIZED:
            self.assertLess(after - base, 4096)

    def test_big_to_fields_not_kept(self):
        # 5,000 To: fields of 2 kB: 10 MB the milter used to hold for the
        # rest of the connection.
        to = ', '.join(f'<user{i:05d}@example.org>' for i in range(80))[:2000]
        headers = [('Message-ID', '<big-to@example.net>'),
                   ('Subject', 'big to')] + [('To', to)] * 5000
        client = MilterClient(self.milter.sock)
        try:
            base = self.warm(client)
            reply, actions, secs = self.send(client, headers, 'BIGTO1')
            after = self.milter.rss_kb()
            # the session goes on as usual
            reply2, actions2, _ = self.send(
                client, [('Subject', 'after big to')], 'BIGTO2')
        finally:
            client.close()
        print(f'5000 x 2 kB To: fields: {secs:.2f} s, RSS {base} -> '
              f'{after} kB', file=sys.stderr)
        self.assertEqual(reply, b'a', actions)
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Dedup'),
                         'unchecked', actions)
        self.assertIsNone(MilterClient.added(actions,
                                             'X-Backfill-Fingerprint'))
        if not SANITIZED:
            self.assertLess(after - base, 3072)
        self.assertEqual(reply2, b'a', actions2)
        self.assertIsNotNone(MilterClient.added(actions2,
                                                'X-Backfill-Fingerprint'))
        self.assertIn('BIGTO1', self.milter.log_text())
        self.assertIn('exceed 1 MiB', self.milter.log_text())

    def rcpt_cpu(self, n, qid, rcpts=None):
        """CPU seconds the milter spends on one message to n distinct
        recipients (rcpts, else plain ones)."""
        if rcpts is None:
            rcpts = [f'<r{i:06d}@example.org>' for i in range(n)]
        client = MilterClient(self.milter.sock)
        try:
            cpu = self.milter.cpu_seconds()
            reply, actions = client.message(
                '<sender@example.net>', rcpts,
                [('Message-ID', f'<{qid}@example.net>'),
                 ('Subject', f'{n} recipients')], [b'body\r\n'],
                queue_id=qid)
            cpu = self.milter.cpu_seconds() - cpu
        finally:
            client.close()
        self.assertEqual(reply, b'a', actions)
        self.assertIsNotNone(MilterClient.added(actions,
                                                'X-Backfill-Fingerprint'))
        return cpu

    def test_many_recipients_linear(self):
        # Postfix passes up to smtpd_recipient_limit (1000 by default,
        # raised for lists): each recipient's dedup key used to be
        # searched among all recipients before it, 3.3 s of CPU for
        # 40,000 and a quarter of that for 20,000.  Four times the
        # recipients must cost about four times the CPU, not sixteen.
        small, large = self.least_cpu(
            lambda n: self.rcpt_cpu(8000, f'RCPT8K-{n}'),
            lambda n: self.rcpt_cpu(32000, f'RCPT32K-{n}'))
        print(f'recipients: 8,000 {small:.2f} s CPU, 32,000 {large:.2f} s',
              file=sys.stderr)
        self.assertLess(large, 7 * max(small, 0.05))

    def least_cpu(self, small, large, rounds=3):
        """The least CPU time of each of two runs, measured in turn
        rounds times.  CPU time is not wall time, but a loaded machine
        inflates it too (a sibling hyperthread, caches and memory shared
        with another job): a large run that met the load and a small one
        that did not made a ratio of 4 look like 6 or more (the bound is
        7; a quadratic cost makes 16).  The least of a few is the one
        least disturbed, on either side."""
        smalls, larges = [], []
        for n in range(rounds):
            smalls.append(small(n))
            larges.append(large(n))
        print('CPU seconds, small: %s, large: %s' % (
            ' '.join('%.2f' % t for t in smalls),
            ' '.join('%.2f' % t for t in larges)), file=sys.stderr)
        return min(smalls), min(larges)

    def test_colliding_recipients_linear(self):
        # The same with addresses whose unkeyed FNV-1a hashes (the
        # recipient index's before it had a per-process seed) agree in
        # their low 20 bits, all in one probe run of the index: 8,192
        # and 32,768 of them.
        rcpts = [f'<{local}@example.org>' for local in fnv_multicollision(15)]
        small, large = self.least_cpu(
            lambda n: self.rcpt_cpu(8192, f'RCPTC8K-{n}', rcpts[:8192]),
            lambda n: self.rcpt_cpu(32768, f'RCPTC32K-{n}', rcpts))
        print(f'colliding recipients: 8,192 {small:.2f} s CPU, '
              f'32,768 {large:.2f} s', file=sys.stderr)
        self.assertLess(large, 7 * max(small, 0.05))


def fnv_multicollision(stages, bits=20):
    """2**stages local parts whose 64-bit FNV-1a hashes (offset basis
    2166136261, prime 16777619, as the milter had them) agree in their
    low bits: those depend only on the low bits of the state, so at each
    stage two 3-character blocks that lead the state to the same low bits
    are found by their birthday, and any choice of one per stage is a
    string of the same hash (Joux's multicollision).  Whatever follows
    (@example.org) keeps them equal."""
    mask = (1 << bits) - 1
    alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
    # after the leading 'r'
    state, pairs = ((2166136261 ^ ord('r')) * 16777619) & mask, []
    for _ in range(stages):
        seen = {}
        for a in alphabet:
            for b in alphabet:
                for c in alphabet:
                    h = state
                    for ch in (a, b, c):
                        h = ((h ^ ord(ch)) * 16777619) & mask
                    if h in seen:
                        break
                    seen[h] = a + b + c
                else:
                    continue
                break
            else:
                continue
            break
        pairs.append((seen[h], a + b + c))
        state = h
    out = ['r']
    for pair in pairs:
        out = [s + block for s in out for block in pair]
    return out


if __name__ == '__main__':
    unittest.main(verbosity=2)

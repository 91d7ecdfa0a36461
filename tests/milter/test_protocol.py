#!/usr/bin/python3
"""backfill-milter against inputs miltertest cannot produce: 1 MB header
fields, NUL and 8-bit bytes, malformed header names, broken protocol
packets.  The fingerprint the milter writes must equal the reference
implementation's (tests/lib/fingerprint_ref.py) for the same raw message,
and the milter must neither crash nor grow.

Environment: BACKFILL_MILTER and BACKFILLCTL (paths of the built binaries).
"""

import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import fingerprint_ref  # noqa: E402
from milterclient import (ALL_ACTIONS, SMFIF_DELRCPT,  # noqa: E402
                          MilterClient, raw_message)
from milterproc import SANITIZED, PrivateMilter  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')


def ref_fp(raw):
    return 'v1:' + fingerprint_ref.fingerprint(raw)[0]


class ProtocolTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.milter = PrivateMilter(MILTER, BACKFILLCTL, window='restore-1')
        cls.milter.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.milter.stop()
        log = cls.milter.log_text()
        cls.milter.__exit__(None, None, None)
        if rc != 0:
            raise AssertionError(f'milter did not stop cleanly ({rc}):\n{log}')

    def send(self, headers, body, rcpts=('<alice@example.org>',), qid='Q1',
             client=None):
        own = client is None
        client = client or MilterClient(self.milter.sock)
        try:
            chunks = [body] if body else []
            return client.message('<sender@example.net>', list(rcpts),
                                  headers, chunks, queue_id=qid)
        finally:
            if own:
                client.close()

    def assert_fingerprint(self, headers, body, **kw):
        reply, actions = self.send(headers, body, **kw)
        self.assertEqual(reply, b'a', actions)
        fp = MilterClient.added(actions, 'X-Backfill-Fingerprint')
        self.assertIsNotNone(fp, actions)
        self.assertEqual(fp, ref_fp(raw_message(headers, body)))
        self.assertIsNone(MilterClient.added(actions, 'X-Backfill-Dedup'))
        return fp

    def test_1mb_headers_no_growth(self):
        # The fingerprinted fields together stay under the milter's cap
        # of 1 MiB (test_hostile.py goes past it); X-Junk is not kept.
        big = 'x' * (1000 * 1000)
        half = 'y' * (400 * 1000)
        client = MilterClient(self.milter.sock)
        self.send([('Subject', 'warm-up')], b'hi\r\n', client=client)
        base = self.milter.rss_kb()
        sizes = []
        for n in range(8):
            headers = [('Message-ID', f'<h{n}@example.net>'),
                       ('Subject', half + str(n)), ('X-Junk', big),
                       ('References', half)]
            self.assert_fingerprint(headers, b'short body\r\n',
                                    client=client, qid=f'H{n}')
            sizes.append(self.milter.rss_kb())
        client.close()
        print(f'RSS {base} kB before, after each 1.8 MB-header message: '
              f'{sizes} kB', file=sys.stderr)
        # Each field arrives in one packet; the selected ones are
        # kept until the end of the headers: a few MB at peak, no more
        # after the next message.
        if not SANITIZED:
            self.assertLess(sizes[0] - base, 16 * 1024)
            # A leak of the kept fields would be 0.8 MB a message, 4.8 MB
            # over these six; malloc's own slack can reach 1 MB.
            self.assertLess(sizes[-1] - sizes[1], 2 * 1024)

    def test_nul_and_8bit_body(self):
        body = (b'line with NUL \0 in it\r\n\0\0\0\r\n'
                b'8-bit: \xe9\xe8\xff\xfe\r\nbare CR \r in a line\r\n'
                b'trailing blanks \t \r\n\r\n\r\n')
        self.assert_fingerprint([('Subject', 'nul'),
                                 ('Message-ID', '<nul@example.net>')], body)

    def test_body_without_final_newline(self):
        self.assert_fingerprint([('Subject', 'no eol')], b'last line')

    def test_empty_body_and_no_headers(self):
        self.assert_fingerprint([('Subject', 'empty')], b'')
        self.assert_fingerprint([], b'only a body\r\n', qid='Q2')

    def test_malformed_headers(self):
        headers = [
            ('Bad Name', 'space in the name'),
            ('Subject', ''),
            ('Subject', '   leading and   inner   blanks  '),
            ('From', 'folded\r\n\tcontinuation\r\n  and more'),
            ('To', 'folded with bare LF\n\tnext'),
            (b'X-\xff\xfe', b'8-bit name'),
            (b'Subject', b'8-bit value \xe9\xa0'),
            ('Message-ID', '<a@b> <c@d>'),
        ]
        self.assert_fingerprint(headers, b'body\r\n')

    def test_broken_packets_do_not_kill_the_milter(self):
        # A header packet without its NULs, a packet with an unknown
        # command, a truncated connection mid-body: each may end that
        # session, none may take the milter down.
        for packet in (b'L' + b'NoNulHere', b'Z' + b'junk',
                       b'L' + b'Subject\0a\0b\0c\0'):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.milter.sock)
                try:
                    s.sendall(struct.pack('!I', 13) + b'O' +
                              struct.pack('!III', 6, 0x1ff, 0x1fffff))
                    s.recv(4096)
                    s.sendall(struct.pack('!I', 23) +
                              b'M<sender@example.net>\0')
                    s.recv(4096)
                    s.sendall(struct.pack('!I', len(packet)) + packet)
                    s.recv(4096)
                except (socket.timeout, ConnectionError):
                    pass
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.milter.sock)
            s.sendall(struct.pack('!I', 13) + b'O' +
                      struct.pack('!III', 6, 0x1ff, 0x1fffff))
            s.sendall(struct.pack('!I', 1 + 1000) + b'B' + b'x' * 10)
        self.assertIsNone(self.milter.proc.poll(), 'milter died')
        self.assert_fingerprint([('Subject', 'after the junk')], b'ok\r\n')


class QuarantineRecipientTest(unittest.TestCase):
    """A partial duplicate with QuarantineRecipient: the recipients that
    already have the message are removed and the quarantine address is
    added once in their place, whatever the number removed (miltertest
    cannot count actions)."""

    QUARANTINE = '<quarantine@example.org>'

    @classmethod
    def setUpClass(cls):
        cls.milter = PrivateMilter(
            MILTER, BACKFILLCTL, window='restore-1',
            config=['QuarantineRecipient quarantine@example.org'])
        cls.milter.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.milter.stop()
        log = cls.milter.log_text()
        cls.milter.__exit__(None, None, None)
        if rc != 0:
            raise AssertionError(f'milter did not stop cleanly ({rc}):\n{log}')

    def send(self, n, rcpts, qid, **kw):
        headers = [('Message-ID', f'<qr{n}@example.net>'),
                   ('From', 'sender@example.net'),
                   ('Subject', f'quarantine recipient {n}')]
        client = MilterClient(self.milter.sock, **kw)
        try:
            reply, actions = client.message('<sender@example.net>', rcpts,
                                            headers, [b'body\r\n'],
                                            queue_id=qid)
        finally:
            client.close()
        self.assertEqual(reply, b'a', actions)
        return actions

    def delivered(self, n, rcpts):
        """The message n delivered once to rcpts, confirmed as the
        Dovecot plugin would in LMTP."""
        actions = self.send(n, rcpts, f'FIRST{n}')
        fp = MilterClient.added(actions, 'X-Backfill-Fingerprint')
        self.assertIsNotNone(fp, actions)
        for r in rcpts:
            self.milter.ctl('dedup', 'mark-delivered', 'restore-1',
                            r.strip('<>').lower(), fp)

    def test_one_addrcpt_for_several_removed(self):
        dups = ['<bob@example.org>', '<Carol@example.org>',
                '<dan@example.org>', '<eve@example.org>']
        self.delivered(1, dups)
        actions = self.send(1, [dups[0], '<new1@example.org>', dups[1],
                                dups[2], '<new2@example.org>', dups[3]],
                            'QMANY')
        adds = MilterClient.of_kind(actions, 'addrcpt')
        dels = MilterClient.of_kind(actions, 'delrcpt')
        self.assertEqual(adds, [self.QUARANTINE], actions)
        self.assertEqual(dels, dups, actions)
        kinds = [a[0] for a in actions]
        self.assertLess(kinds.index('addrcpt'), kinds.index('delrcpt'),
                        'the copy is kept before anyone is removed')
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Removed'),
                         '4 duplicate recipient(s) already delivered')
        self.assertIsNone(MilterClient.added(actions,
                                             'X-Backfill-Duplicate'))
        self.assertNotIn('quarantine', kinds)

    def test_quarantine_address_is_never_removed(self):
        # Postfix deletes every recipient record with the address given,
        # the one just added included: removing the quarantine address
        # as a duplicate would keep the removed copies nowhere.
        self.delivered(2, ['<bob@example.org>', '<quarantine@example.org>'])
        actions = self.send(2, ['<bob@example.org>', '<new@example.org>',
                                '<quarantine@example.org>'], 'QSELF')
        self.assertEqual(MilterClient.of_kind(actions, 'addrcpt'),
                         [self.QUARANTINE], actions)
        self.assertEqual(MilterClient.of_kind(actions, 'delrcpt'),
                         ['<bob@example.org>'], actions)
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Removed'),
                         '1 duplicate recipient(s) already delivered')
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Duplicate'),
                         'confirmed', 'the quarantine address is told')
        self.assertIn('QSELF: kept recipient <quarantine@example.org>, '
                      'although already delivered: it is the QuarantineRecipient',
                      self.milter.log_text())

    def test_other_spelling_of_the_quarantine_address(self):
        # Postfix deletes records whose address is the same byte for
        # byte: <Quarantine@Example.ORG> is removed like any duplicate,
        # the added quarantine record stays.
        self.delivered(5, ['<bob@example.org>', '<quarantine@example.org>'])
        actions = self.send(5, ['<bob@example.org>', '<new@example.org>',
                                '<Quarantine@Example.ORG>'], 'QCASE')
        self.assertEqual(MilterClient.of_kind(actions, 'addrcpt'),
                         [self.QUARANTINE], actions)
        self.assertEqual(sorted(MilterClient.of_kind(actions, 'delrcpt')),
                         ['<Quarantine@Example.ORG>', '<bob@example.org>'], actions)
        self.assertIsNone(MilterClient.added(actions, 'X-Backfill-Duplicate'))

    def test_quoted_spelling_is_not_removed(self):
        # Postfix unquotes the address it is told to delete: "bob"@ could
        # be another recipient (or the quarantine address) to it.  Only
        # plain spellings are removed; this one gets the message again.
        first = self.send(6, ['<"bob"@example.org>', '<carol@example.org>'], 'FIRST6')
        fp = MilterClient.added(first, 'X-Backfill-Fingerprint')
        for key in ('carol@example.org', '"bob"@example.org'):
            self.milter.ctl('dedup', 'mark-delivered', 'restore-1', key, fp)
        actions = self.send(6, ['<"bob"@example.org>', '<carol@example.org>',
                                '<new@example.org>'], 'QQUOTE')
        self.assertEqual(MilterClient.of_kind(actions, 'delrcpt'),
                         ['<carol@example.org>'], actions)
        self.assertEqual(MilterClient.of_kind(actions, 'addrcpt'),
                         [self.QUARANTINE], actions)
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Duplicate'),
                         'confirmed', 'the kept duplicate is tagged')
        self.assertIn('QQUOTE: kept recipient <"bob"@example.org>, although '
                      'already delivered: its address is not plainly spelled',
                      self.milter.log_text())

    def test_tagged_when_a_spelling_is_kept(self):
        # Two spellings of bob are one dedup key but two removals: the
        # tag must follow the recipients kept, not the keys.
        self.delivered(7, ['<bob@example.org>', '<quarantine@example.org>'])
        actions = self.send(7, ['<Bob@example.org>', '<bob@example.org>',
                                '<quarantine@example.org>', '<new@example.org>'],
                            'QTAG')
        self.assertEqual(sorted(MilterClient.of_kind(actions, 'delrcpt')),
                         ['<Bob@example.org>', '<bob@example.org>'], actions)
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Duplicate'),
                         'confirmed', 'the quarantine address got a repeat untagged')

    def test_quarantine_address_the_only_duplicate(self):
        # Nobody to remove: the quarantine address is not added again.
        self.delivered(3, ['quarantine@example.org'])
        actions = self.send(3, ['quarantine@example.org',
                                '<new@example.org>'], 'QONLY')
        self.assertEqual(MilterClient.of_kind(actions, 'addrcpt'), [],
                         actions)
        self.assertEqual(MilterClient.of_kind(actions, 'delrcpt'), [],
                         actions)
        self.assertIsNone(MilterClient.added(actions, 'X-Backfill-Removed'))
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Duplicate'),
                         'confirmed')
        self.assertIn('QONLY: kept recipient quarantine@example.org',
                      self.milter.log_text())

    def test_mta_that_grants_no_removal(self):
        # An MTA that lets the milter add recipients but not remove
        # them: nobody to remove, so no quarantine copy for nobody; the
        # duplicates get the message again, tagged, and the log says why.
        dups = ['<bob@example.org>', '<carol@example.org>']
        self.delivered(4, dups)
        actions = self.send(4, dups + ['<new@example.org>'], 'QNODEL',
                            actions=ALL_ACTIONS & ~SMFIF_DELRCPT)
        self.assertEqual(MilterClient.of_kind(actions, 'addrcpt'), [], actions)
        self.assertEqual(MilterClient.of_kind(actions, 'delrcpt'), [],
                         actions)
        self.assertIsNone(MilterClient.added(actions, 'X-Backfill-Removed'))
        self.assertEqual(MilterClient.added(actions, 'X-Backfill-Duplicate'),
                         'confirmed')
        self.assertIn('QNODEL: 2 duplicate recipient(s) kept: the MTA '
                      'did not grant the milter the right to remove recipients',
                      self.milter.log_text())


class HungStore:
    """A TCP listener that accepts and reads but never answers: a Redis
    server that hangs rather than refuses."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)  # held open, never answered

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class HungStoreTest(unittest.TestCase):
    """BRIEF, milter: "State store down or internal error: accept, tag as
    unchecked, log" -- also when the store hangs.  The first message waits
    for the store's timeout once; the failed window read then stands for
    WindowRefresh, so the messages queued behind it do not each wait for a
    timeout (Postfix would end the milter session and pass mail
    untagged, with forged X-Backfill-* headers kept)."""

    TIMEOUT_MS = 1000

    @classmethod
    def setUpClass(cls):
        cls.store = HungStore()
        cls.milter = PrivateMilter(
            MILTER, BACKFILLCTL, config=['WindowRefresh 30s'],
            state=f'redis://127.0.0.1:{cls.store.port}/0?timeout={cls.TIMEOUT_MS}')
        cls.milter.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.milter.stop()
        cls.milter.__exit__(None, None, None)
        cls.store.close()
        if rc != 0:
            raise AssertionError(f'milter did not stop cleanly ({rc})')

    def test_accepted_tagged_and_no_timeout_per_message(self):
        times = []
        client = MilterClient(self.milter.sock)
        try:
            for n in range(6):
                t0 = time.monotonic()
                reply, actions = client.message(
                    '<sender@example.net>', ['<alice@example.org>', '<bob@example.org>'],
                    [('Subject', f'hung {n}'), ('X-Backfill-Dedup', 'checked')],
                    [b'body\r\n'], queue_id=f'HS{n}')
                times.append(time.monotonic() - t0)
                self.assertEqual(reply, b'a', actions)
                self.assertEqual(MilterClient.added(actions, 'X-Backfill-Dedup'), 'unchecked', actions)
                kinds = [a[0] for a in actions]
                self.assertNotIn('delrcpt', kinds, actions)
                self.assertNotIn('quarantine', kinds, actions)
                self.assertTrue([a for a in actions if a[0] == 'chgheader'
                                 and a[2] == 'X-Backfill-Dedup' and a[3] == ''],
                                f'forged header kept: {actions}')
        finally:
            client.close()
        print(f'seconds per message with a hung store: {["%.3f" % t for t in times]}',
              file=sys.stderr)
        self.assertGreater(len(self.store.conns), 0, 'the milter never tried the store')
        # the first one may wait for the timeout; the others must not
        self.assertLess(times[0], 5 * self.TIMEOUT_MS / 1000)
        for t in times[1:]:
            self.assertLess(t, self.TIMEOUT_MS / 1000 / 2, times)
        log = self.milter.log_text()
        self.assertIn('cannot read the restore window from the state store', log)


LOCKER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute('BEGIN EXCLUSIVE')
print('locked', flush=True)
sys.stdin.readline()
db.execute('ROLLBACK')
"""


class LockedStoreTest(unittest.TestCase):
    """Issue 16, item 4: with the SQLite file locked by another process,
    only the first message waits (StoreTimeout); the store is then left
    alone for StoreRetry, every message accepted and tagged unchecked
    at once, the failure logged once; after StoreRetry one message
    probes the store again and, the lock gone, mail is checked again."""

    @classmethod
    def setUpClass(cls):
        cls.milter = PrivateMilter(
            MILTER, BACKFILLCTL, window='restore-1',
            config=['StoreTimeout 1s', 'StoreRetry 3s'])
        cls.milter.start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.milter.stop()
        cls.milter.__exit__(None, None, None)
        if rc != 0:
            raise AssertionError(f'milter did not stop cleanly ({rc})')

    def message(self, client, n):
        t0 = time.monotonic()
        reply, actions = client.message(
            '<sender@example.net>', ['<alice@example.org>'],
            [('Subject', f'locked {n}'), ('Message-ID', f'<lk{n}@x>')],
            [b'body\r\n'], queue_id=f'LK{n}')
        self.assertEqual(reply, b'a', actions)
        return time.monotonic() - t0, MilterClient.added(
            actions, 'X-Backfill-Dedup')

    def test_one_timeout_then_left_alone_then_probed(self):
        client = MilterClient(self.milter.sock)
        self.assertIsNone(self.message(client, 0)[1])
        db = self.milter.state[len('sqlite:'):]
        locker = subprocess.Popen([sys.executable, '-c', LOCKER, db],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(locker.stdout.readline().strip(), 'locked')
            results = [self.message(client, n) for n in range(1, 7)]
        finally:
            locker.stdin.write('\n')
            locker.stdin.close()
            locker.wait()
        times = [t for t, _ in results]
        print(f'seconds per message, store locked: '
              f'{["%.3f" % t for t in times]}', file=sys.stderr)
        self.assertEqual([tag for _, tag in results], ['unchecked'] * 6)
        self.assertGreater(times[0], 0.8)   # it did wait for the lock
        self.assertLess(times[0], 5)        # StoreTimeout, not 10 s
        for t in times[1:]:
            self.assertLess(t, 0.5, times)
        # StoreRetry passes: the next message probes and is checked
        time.sleep(3.2)
        t, tag = self.message(client, 7)
        client.close()
        self.assertIsNone(tag)
        log = self.milter.log_text()
        self.assertEqual(log.count('state store failed'), 1, log)
        self.assertIn('state store answers again', log)



class DamagedWindowNameTest(unittest.TestCase):
    """A window name in the store that backfillctl refuses (written by
    hand or other software: CR LF and a header line after it) never
    reaches a header: the milter's answer for it is that of a store it
    cannot read, so mail is accepted and tagged X-Backfill-Dedup:
    unchecked, with a QUEUEID: line per message and the store error
    logged once, without the name."""

    FORGED = ('w1\r\nAuthentication-Results: mx.example.org; dkim=pass '
              'header.d=bank.example')

    def damage(self, milter):
        db = sqlite3.connect(milter.state[len('sqlite:'):])
        db.execute('UPDATE windows SET name = ?', (self.FORGED,))
        db.commit()
        db.close()

    def message(self, client, n):
        reply, actions = client.message(
            '<sender@example.net>', ['<alice@example.org>'],
            [('Subject', f'window name {n}'), ('Message-ID', f'<wn{n}@x>')],
            [b'body\r\n'], queue_id=f'WN{n}')
        self.assertEqual(reply, b'a', actions)
        for a in actions:
            for field in a[1:]:
                if isinstance(field, str):
                    self.assertNotIn('\r', field, actions)
                    self.assertNotIn('\n', field, actions)
        return actions

    def check_unchecked(self, milter, client, qids):
        for n in qids:
            actions = self.message(client, n)
            self.assertIsNone(
                MilterClient.added(actions, 'X-Backfill-Window'), actions)
            self.assertIsNone(
                MilterClient.added(actions, 'X-Backfill-Fingerprint'),
                actions)
            self.assertEqual(
                MilterClient.added(actions, 'X-Backfill-Dedup'),
                'unchecked', actions)
        log = milter.log_text()
        self.assertEqual(log.count(
            'cannot read the restore window from the state store'), 1, log)
        # the store error once per StoreRetry, as for a store that fails
        self.assertEqual(log.count('state store failed'), 1, log)
        self.assertIn('damaged window', log)
        self.assertNotIn('Authentication-Results', log)
        for n in qids:
            self.assertIn(f'WN{n}: accepted without duplicate check', log)

    def test_name_changed_while_running(self):
        milter = PrivateMilter(MILTER, BACKFILLCTL, window='w1')
        milter.start()
        try:
            client = MilterClient(milter.sock)
            actions = self.message(client, 0)
            self.assertEqual(
                MilterClient.added(actions, 'X-Backfill-Window'), 'w1')
            self.damage(milter)
            time.sleep(1.2)  # WindowRefresh 1s
            self.check_unchecked(milter, client, range(1, 4))
            client.close()
        finally:
            rc = milter.stop()
            milter.__exit__(None, None, None)
        self.assertEqual(rc, 0)

    def test_name_damaged_at_start(self):
        milter = PrivateMilter(MILTER, BACKFILLCTL)
        milter.ctl('window', 'open', 'w1')
        self.damage(milter)
        milter.start()
        try:
            client = MilterClient(milter.sock)
            self.check_unchecked(milter, client, range(1, 3))
            client.close()
        finally:
            rc = milter.stop()
            milter.__exit__(None, None, None)
        self.assertEqual(rc, 0)

if __name__ == '__main__':
    unittest.main(verbosity=2)

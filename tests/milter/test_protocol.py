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
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

import fingerprint_ref  # noqa: E402
from milterclient import MilterClient  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')


def raw_message(headers, body):
    """The message as the MTA received it (what a mailbox stores)."""
    out = b''
    for name, value in headers:
        name = name.encode() if isinstance(name, str) else name
        value = value.encode() if isinstance(value, str) else value
        out += name + b': ' + value + b'\r\n'
    return out + b'\r\n' + body


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
        big = 'x' * (1000 * 1000)
        client = MilterClient(self.milter.sock)
        self.send([('Subject', 'warm-up')], b'hi\r\n', client=client)
        base = self.milter.rss_kb()
        sizes = []
        for n in range(5):
            headers = [('Message-ID', f'<h{n}@example.net>'),
                       ('Subject', big + str(n)), ('X-Junk', big),
                       ('References', big)]
            self.assert_fingerprint(headers, b'short body\r\n',
                                    client=client, qid=f'H{n}')
            sizes.append(self.milter.rss_kb())
        client.close()
        print(f'RSS {base} kB before, after each 3 MB-header message: '
              f'{sizes} kB', file=sys.stderr)
        # Each field arrives in one 1 MB packet; the selected ones are
        # kept until the end of the headers: a few MB at peak, no more
        # after the next message.
        self.assertLess(sizes[0] - base, 16 * 1024)
        self.assertLess(sizes[-1] - sizes[1], 1024)

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


if __name__ == '__main__':
    unittest.main(verbosity=2)

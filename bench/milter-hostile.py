#!/usr/bin/python3
"""The worst messages for backfill-milter (issue 16, item 3), next to the
throughput benchmark: what one hostile message costs the milter in CPU,
wall time and memory.

usage: bench/milter-hostile.py [--rounds R] MILTER BACKFILLCTL

A private milter (tests/milter/milterproc.py) with a restore window open
and a SQLite store in a temp dir, driven by the Python milter client
directly (no Postfix: Postfix's own limits would cut some cases short):
  - forged: 100,000 distinct X-Backfill-* fields (refused, 550 5.7.1);
  - fields: 100,000 distinct other fields (streamed, fingerprinted);
  - big-to: 5,000 To: fields of 2 kB (accepted unchecked, not kept);
  - plain: --plain ordinary 2 kB messages, each new (one store insert
    each), for the CPU per message of the usual path.
Per case: the milter's CPU per message (utime+stime from /proc), the
client's wall time from MAIL to the end-of-message reply, and the
milter's RSS after the rounds.  The wall time includes the client
sending 100,000 packets from Python.
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'milter'))

from milterclient import MilterClient  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402

N = 100000


def cases():
    to = ', '.join(f'<user{i:05d}@example.org>' for i in range(80))[:2000]
    return [
        ('forged', [('Subject', 'flood')] +
         [(f'X-Backfill-Flood-{i}', 'v1:forged') for i in range(N)]),
        ('fields', [('Subject', 'fields')] +
         [(f'X-Flood-{i}', 'value') for i in range(N)]),
        ('big-to', [('Subject', 'big to')] + [('To', to)] * 5000),
    ]


def plain(n):
    return [('Message-ID', f'<plain{n}@example.net>'),
            ('From', 'sender@example.net'), ('To', 'alice@example.org'),
            ('Subject', f'plain {n}')]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--plain', type=int, default=2000,
                    help='ordinary messages, each new, for the CPU per '
                    'message of the usual path')
    ap.add_argument('milter')
    ap.add_argument('backfillctl')
    args = ap.parse_args()
    body = b'a body line of the message, like any other .........\r\n' * 36
    with tempfile.TemporaryDirectory(prefix='bf-bench-hostile-') as tmp:
        m = PrivateMilter(args.milter, args.backfillctl, window='restore-1',
                          config=['LogLevel warning'], tmp=tmp)
        m.start()
        try:
            print(f'| case | reply | milter CPU per message | wall per '
                  f'message | RSS after |')
            print('|---|---|---|---|---|')
            for name, headers in cases():
                client = MilterClient(m.sock)
                cpu0, t0 = m.cpu_seconds(), time.monotonic()
                for r in range(args.rounds):
                    reply, _ = client.message(
                        '<sender@example.net>', ['<alice@example.org>'],
                        headers, [body], queue_id=f'{name}{r}')
                wall = (time.monotonic() - t0) / args.rounds
                cpu = (m.cpu_seconds() - cpu0) / args.rounds
                client.close()
                print(f'| {name} | {reply.decode()} | {cpu * 1000:.1f} ms '
                      f'| {wall * 1000:.0f} ms | {m.rss_kb()} kB |',
                      flush=True)
            client = MilterClient(m.sock)
            cpu0, t0 = m.cpu_seconds(), time.monotonic()
            for n in range(args.plain):
                reply, _ = client.message(
                    '<sender@example.net>', ['<alice@example.org>'],
                    plain(n), [body], queue_id=f'P{n}')
            wall = (time.monotonic() - t0) / args.plain
            cpu = (m.cpu_seconds() - cpu0) / args.plain
            client.close()
            print(f'| plain x {args.plain} | {reply.decode()} | '
                  f'{cpu * 1000:.3f} ms | {wall * 1000:.2f} ms | '
                  f'{m.rss_kb()} kB |', flush=True)
        finally:
            m.stop()
            m.__exit__(None, None, None)


if __name__ == '__main__':
    main()

#!/usr/bin/python3
"""backfillctl window and dedup: what an operator types during a restore,
against a real store, with the exit codes scripts rely on (0 done, 1
something to look at, 2 usage).

Environment: BACKFILL_MILTER and BACKFILLCTL (paths of the built binaries).
"""

import calendar
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

sys.path.insert(0, os.path.join(HERE, '..', 'lib'))

from milterclient import MilterClient  # noqa: E402
from milterproc import PrivateMilter  # noqa: E402
from redis_server import REDIS_CLI, REDIS_SERVER, PrivateRedis  # noqa: E402

MILTER = os.environ.get('BACKFILL_MILTER', 'backfill-milter')
BACKFILLCTL = os.environ.get('BACKFILLCTL', 'backfillctl')


class Backfillctl(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix='bf-ctl-')
        self.state = 'sqlite:' + os.path.join(self.tmp.name, 'state.db')

    def tearDown(self):
        self.tmp.cleanup()

    def ctl(self, *args, env_state=True):
        env = dict(os.environ)
        env.pop('BACKFILL_STATE', None)
        if env_state:
            env['BACKFILL_STATE'] = self.state
        return subprocess.run([BACKFILLCTL, *args], env=env,
                              capture_output=True, text=True, timeout=30)

    def test_window_lifecycle(self):
        r = self.ctl('window', 'status')
        self.assertEqual((r.returncode, r.stdout), (1, 'no window open\n'))
        r = self.ctl('window', 'close')
        self.assertEqual(r.returncode, 1)

        r = self.ctl('window', 'open', 'restore-1', '--until', '6h')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('window', 'status')
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith('window restore-1 open since '))
        until = r.stdout.split('until ')[1].strip()
        t = calendar.timegm(time.strptime(until, '%Y-%m-%d %H:%M:%S UTC'))
        self.assertLess(abs(t - (time.time() + 6 * 3600)), 60)

        # Opening another replaces the first only when asked to.
        r = self.ctl('window', 'open', 'restore-2', '--until',
                     '2099-01-02 03:04', '--replace')
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('window', 'status')
        self.assertIn('window restore-2', r.stdout)
        self.assertIn('until 2099-01-02 03:04:00 UTC', r.stdout)
        r = self.ctl('window', 'close')
        self.assertEqual((r.returncode, r.stdout),
                         (0, 'window restore-2 closed\n'))
        self.assertEqual(self.ctl('window', 'status').returncode, 1)

        # --until @UNIXTIME, and the window ends by itself.  Open for 5
        # to 6 s: two backfillctl runs must fit before its end on a
        # loaded machine (2 s, as little as 1 s after the rounding, was
        # tight), and its end is waited for, not guessed.
        until = int(time.time()) + 6
        r = self.ctl('window', 'open', 'short', '--until', '@%d' % until)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ctl('window', 'status').returncode, 0)
        time.sleep(max(0.0, until + 0.1 - time.time()))
        self.assertEqual(self.ctl('window', 'status').returncode, 1)
        # An ended window is not open: another opens without --replace.
        r = self.ctl('window', 'open', 'after-short')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ctl('window', 'close').returncode, 0)

        # --state overrides the environment.
        other = 'sqlite:' + os.path.join(self.tmp.name, 'other.db')
        r = self.ctl('window', 'open', 'elsewhere', '--state', other)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl('window', 'status', '--state', other, env_state=False)
        self.assertIn('elsewhere', r.stdout)
        self.assertEqual(self.ctl('window', 'status').returncode, 1)
        # ... also before the command, as the usage line shows it.
        r = self.ctl('--state', other, 'window', 'status', env_state=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('elsewhere', r.stdout)
        r = self.ctl('--state', env_state=False)
        self.assertEqual(r.returncode, 2, r.stdout)

    def test_window_open_refuses_another(self):
        # A second name by mistake would end the first window's dedup:
        # refused, nothing changed, exit 1 with what to do.
        r = self.ctl('window', 'open', 'restore-1', '--until', '6h')
        self.assertEqual(r.returncode, 0, r.stderr)
        before = self.ctl('window', 'status').stdout
        r = self.ctl('window', 'open', 'restore-2')
        self.assertEqual((r.returncode, r.stdout), (1, ''), r.stderr)
        self.assertIn('window open restore-2: window restore-1 is open '
                      '(since ', r.stderr)
        self.assertIn('Nothing changed', r.stderr)
        self.assertIn('backfillctl window close', r.stderr)
        self.assertIn('--replace', r.stderr)
        self.assertEqual(self.ctl('window', 'status').stdout, before)

        # The same name again: still fine, a new --until is taken, and
        # the window keeps the time it opened (a second later, so that
        # a new one would show).
        since = before.split(' open since ')[1].split(',')[0]
        time.sleep(1.1)
        r = self.ctl('window', 'open', 'restore-1', '--until',
                     '2099-05-06 07:08')
        self.assertEqual((r.returncode, r.stdout),
                         (0, 'window restore-1 was already open; now until '
                             '2099-05-06 07:08:00 UTC\n'), r.stderr)
        self.assertEqual(self.ctl('window', 'status').stdout,
                         'window restore-1 open since %s, until 2099-05-06 '
                         '07:08:00 UTC\n' % since)
        r = self.ctl('window', 'open', 'restore-1', '--until',
                     '2099-05-06 07:08')
        self.assertEqual((r.returncode, r.stdout),
                         (0, 'window restore-1 already open, until '
                             '2099-05-06 07:08:00 UTC\n'), r.stderr)
        r = self.ctl('window', 'status')
        self.assertIn('window restore-1 open since', r.stdout)
        self.assertIn('until 2099-05-06 07:08:00 UTC', r.stdout)
        # ... also without --until (open until closed).
        r = self.ctl('window', 'open', 'restore-1')
        self.assertEqual((r.returncode, r.stdout),
                         (0, 'window restore-1 was already open; now until '
                             'closed (backfillctl window close)\n'), r.stderr)
        self.assertEqual(self.ctl('window', 'status').stdout,
                         'window restore-1 open since %s, until closed\n'
                         % since)

        # --replace switches at once and says what it ended.
        r = self.ctl('window', 'open', 'restore-2', '--replace')
        self.assertEqual(
            (r.returncode, r.stdout),
            (0, 'window restore-1 closed\nwindow restore-2 opened, until '
                'closed (backfillctl window close)\n'), r.stderr)
        r = self.ctl('window', 'status')
        self.assertTrue(r.stdout.startswith('window restore-2 open since'))
        # ... and is harmless when nothing else is open.
        r = self.ctl('window', 'open', 'restore-2', '--replace')
        self.assertEqual((r.returncode, r.stdout),
                         (0, 'window restore-2 already open, until closed\n'))

        # Closed first, another name opens without --replace.
        self.assertEqual(self.ctl('window', 'close').returncode, 0)
        r = self.ctl('window', 'open', 'restore-3')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('window restore-3 open',
                      self.ctl('window', 'status').stdout)

    def test_window_open_at_once(self):
        # Operators or scripts opening different names at the same
        # moment: the check is part of the store's write, so exactly one
        # opens and every other is refused with the winner's name (a
        # check before the write would let several pass, and each later
        # open would end the window before it).
        names = ['at-once-%d' % i for i in range(6)]
        for _ in range(5):
            procs = []
            env = dict(os.environ, BACKFILL_STATE=self.state)
            for name in names:
                procs.append(subprocess.Popen(
                    [BACKFILLCTL, 'window', 'open', name], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True))
            results = [(p.wait(timeout=30), p.stdout.read(), p.stderr.read())
                       for p in procs]
            for p in procs:
                p.stdout.close()
                p.stderr.close()
            won = [names[i] for i, r in enumerate(results) if r[0] == 0]
            self.assertEqual(len(won), 1, results)
            for i, (rc, out, err) in enumerate(results):
                if names[i] == won[0]:
                    self.assertEqual(out, 'window %s opened, until closed '
                                          '(backfillctl window close)\n'
                                     % won[0])
                else:
                    self.assertEqual((rc, out), (1, ''), err)
                    self.assertIn('window open %s: window %s is open '
                                  '(since ' % (names[i], won[0]), err)
            self.assertTrue(self.ctl('window', 'status').stdout.startswith(
                'window %s open since ' % won[0]))
            self.assertEqual(self.ctl('window', 'close').returncode, 0)

    def test_window_open_store_busy(self):
        # The store opens, but the open itself fails (another process
        # holds the write lock beyond busy_timeout): the store's error,
        # exit 1, nothing on stdout, no window.
        path = os.path.join(self.tmp.name, 'state.db')
        self.assertEqual(self.ctl('window', 'status').returncode, 1)
        busy = self.state + '?busy_timeout=200'
        db = sqlite3.connect(path, isolation_level=None, timeout=0)
        try:
            db.execute('BEGIN IMMEDIATE')
            r = self.ctl('window', 'open', 'restore-1', '--state', busy,
                         env_state=False)
            db.execute('ROLLBACK')
        finally:
            db.close()
        self.assertEqual((r.returncode, r.stdout), (1, ''), r.stderr)
        self.assertIn('backfillctl: window open restore-1: state store %s: '
                      'opening a window: ' % path, r.stderr)
        self.assertIn('busy_timeout', r.stderr)
        self.assertEqual(self.ctl('window', 'status').stdout,
                         'no window open\n')

    def test_usage_errors(self):
        for args in (['window'], ['window', 'open'],
                     ['window', 'open', '--replace'],
                     ['window', 'open', 'x', '--replace', 'y'],
                     ['window', 'open', 'x', '--until', 'yesterday'],
                     ['window', 'open', 'x', '--until', '2001-01-01'],
                     ['window', 'status', 'extra'], ['window', 'frobnicate'],
                     ['dedup'], ['dedup', 'stats', 'extra'],
                     ['dedup', 'mark-delivered', 'w', 'a@b', 'nonsense']):
            r = self.ctl(*args)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertTrue(r.stderr, args)

    def test_window_names(self):
        # Window names are short printable tokens: anything else is a
        # usage error (exit 2) before the store is touched, and the name
        # is not echoed back (it may hold the control characters).
        for name in ('restore 1', 'restore\r\nX-Evil: 1', 'restore\n',
                     '\trestore', 'r\x01', 'r\x7f', 'r\u00e9', 'r/1',
                     'r;1', 'w' * 65):
            r = self.ctl('window', 'open', name)
            self.assertEqual((r.returncode, r.stdout), (2, ''),
                             (name, r.stderr))
            self.assertIn('backfillctl: window open: invalid window name: '
                          'expected 1 to 64 characters of A-Z a-z 0-9 . _ '
                          ': -', r.stderr)
            self.assertIn('usage: backfillctl window open NAME', r.stderr)
            self.assertNotIn(name, r.stderr)
            r = self.ctl('window', 'status')
            self.assertEqual((r.returncode, r.stdout),
                             (1, 'no window open\n'), name)
        for name in ('w' * 64, 'mx1.example:restore_2026-12'):
            r = self.ctl('window', 'open', name, '--replace')
            self.assertEqual(r.returncode, 0, (name, r.stderr))
            r = self.ctl('window', 'status')
            self.assertTrue(r.stdout.startswith('window %s open since '
                                                % name), r.stdout)

    def damaged_window_closed(self, damage, what):
        # A window record damaged in the store (by hand, by other
        # software) reads as an error everywhere (the milter then checks
        # no mail); status says so and what ends it, and close closes it
        # with a line saying what was damaged.
        r = self.ctl('window', 'open', 'restore-1')
        self.assertEqual(r.returncode, 0, r.stderr)
        damage()
        r = self.ctl('window', 'status')
        self.assertEqual((r.returncode, r.stdout), (1, ''), r.stderr)
        self.assertIn(what, r.stderr)
        self.assertIn('backfillctl window close ends it', r.stderr)
        r = self.ctl('window', 'open', 'restore-2')
        self.assertEqual((r.returncode, r.stdout), (1, ''), r.stderr)
        self.assertIn('backfillctl window close ends it', r.stderr)
        r = self.ctl('window', 'close')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith('damaged window closed ('),
                        r.stdout)
        self.assertIn(what, r.stdout)
        self.assertNotIn('ends it', r.stdout)
        r = self.ctl('window', 'status')
        self.assertEqual((r.returncode, r.stdout), (1, 'no window open\n'),
                         r.stderr)
        r = self.ctl('window', 'close')
        self.assertEqual((r.returncode, r.stdout),
                         (1, 'no window was open\n'), r.stderr)
        # another one opens without --replace
        r = self.ctl('window', 'open', 'restore-2')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ctl('window', 'close').stdout,
                         'window restore-2 closed\n')

    def sql(self, statement):
        db = sqlite3.connect(self.state[len('sqlite:'):])
        try:
            db.execute(statement)
            db.commit()
        finally:
            db.close()

    def test_window_close_damaged_sqlite(self):
        self.damaged_window_closed(
            lambda: self.sql("UPDATE windows SET opened = -5"),
            'damaged window in the store: field opened')
        self.damaged_window_closed(
            lambda: self.sql("UPDATE windows SET until = 'x' "
                             "WHERE closed = 0"),
            'damaged window in the store: field until')
        self.damaged_window_closed(
            lambda: self.sql("UPDATE windows SET name = 'a' || char(13, 10)"
                             " || 'X-Evil: 1' WHERE closed = 0"),
            'damaged window in the store: its name is not')

    def test_window_close_damaged_redis(self):
        if not os.path.exists(REDIS_SERVER):
            self.skipTest('no redis-server')
        redis = PrivateRedis(self.tmp.name)
        try:
            self.state = redis.uri
            r = self.ctl('dedup', 'stats')
            if 'redis' in r.stderr and 'not' in r.stderr and \
                    r.returncode != 0:
                self.skipTest('backfillctl built without Redis: '
                              + r.stderr)

            def damage(value):
                subprocess.run([REDIS_CLI, '-p', str(redis.port), 'LSET',
                                'backfill:windows', '-1', value],
                               check=True, capture_output=True)
            self.damaged_window_closed(
                lambda: damage('-5:0:0:restore-1'),
                'unreadable window in redis')
            self.damaged_window_closed(
                lambda: damage('1700000000:0:0:a b'),
                'damaged window in the store: its name is not')
        finally:
            redis.stop()

    def test_unreachable_store(self):
        # A store that cannot be opened: exit 1, the store named, and
        # (window open) nothing opened anywhere.
        bad = 'sqlite:' + os.path.join(self.tmp.name, 'no', 'such', 'x.db')
        for args in (['window', 'status'], ['window', 'open', 'restore-4'],
                     ['window', 'close'], ['dedup', 'stats']):
            r = self.ctl(*args, '--state', bad, env_state=False)
            self.assertEqual((r.returncode, r.stdout), (1, ''), r.stderr)
            self.assertIn('x.db', r.stderr)

    def test_dedup_stats_mark_purge(self):
        # Records live for DedupTTL (whole seconds: at least TTL - 1 s):
        # the checks of live records below (five backfillctl runs) must
        # fit in it on a loaded machine, 2 s was tight; their expiry is
        # then waited for, not guessed.
        ttl = 6
        with PrivateMilter(MILTER, BACKFILLCTL, window='w1',
                           tmp=self.tmp.name,
                           config=[f'DedupTTL {ttl}s']) as m:
            c = MilterClient(m.sock)
            reply, actions = c.message(
                '<s@example.net>', ['<a@example.org>', '<b@example.org>'],
                [('Message-ID', '<p1@example.net>'), ('Subject', 'p')],
                [b'body\r\n'], queue_id='P1')
            c.close()
            # the records were written before this (expires: at most
            # this + ttl)
            written = time.time()
            fp = MilterClient.added(actions, 'X-Backfill-Fingerprint')
            r = self.ctl('dedup', 'stats')
            self.assertEqual(r.stdout, 'records 2\ndelivered 0\nexpired 0\n')
            r = self.ctl('dedup', 'mark-delivered', 'w1', 'A@Example.org', fp)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = self.ctl('dedup', 'mark-delivered', 'w1', 'c@example.org', fp)
            self.assertEqual(r.returncode, 1)
            r = self.ctl('dedup', 'stats')
            self.assertEqual(r.stdout, 'records 2\ndelivered 1\nexpired 0\n')
            r = self.ctl('dedup', 'purge')
            self.assertEqual(r.stdout, 'purged 0 expired record(s)\n')
            time.sleep(max(0.0, written + ttl + 0.1 - time.time()))
            # records and delivered count live records only.
            r = self.ctl('dedup', 'stats')
            self.assertEqual(r.stdout, 'records 0\ndelivered 0\nexpired 2\n')
            r = self.ctl('dedup', 'purge')
            self.assertEqual((r.returncode, r.stdout),
                             (0, 'purged 2 expired record(s)\n'))
            r = self.ctl('dedup', 'stats')
            self.assertEqual(r.stdout, 'records 0\ndelivered 0\nexpired 0\n')


if __name__ == '__main__':
    unittest.main(verbosity=2)

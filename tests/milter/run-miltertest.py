#!/usr/bin/python3
"""Runs one miltertest script against a private backfill-milter.

Usage: run-miltertest.py MILTER BACKFILLCTL SCRIPT.lua

The script's leading comment lines configure the run:
  -- config: Key value      extra line for backfill-milter.conf
  -- window: NAME           open this restore window before the milter starts
The milter gets a temporary directory with its socket, an SQLite state
store and its log; the script receives SOCKET, MILTER_PID, STATE,
BACKFILLCTL, TMP, LIBDIR and MILTER_LOG as globals (miltertest -D).
After the script, the milter must stop cleanly on SIGTERM (exit 0)."""

import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from milterproc import catches, unix_listening  # noqa: E402


def main():
    milter, backfillctl, script = sys.argv[1:4]
    script = os.path.abspath(script)
    extra, window = [], None
    with open(script) as f:
        for line in f:
            if not line.startswith('--'):
                break
            body = line[2:].strip()
            if body.startswith('config:'):
                extra.append(body[len('config:'):].strip())
            elif body.startswith('window:'):
                window = body[len('window:'):].strip()

    with tempfile.TemporaryDirectory(prefix='bf-miltertest-') as tmp:
        sock = os.path.join(tmp, 'milter.sock')
        state = 'sqlite:' + os.path.join(tmp, 'state.db')
        log = os.path.join(tmp, 'milter.log')
        conf = os.path.join(tmp, 'backfill-milter.conf')
        with open(conf, 'w') as f:
            f.write(f'Socket unix:{sock}\nState {state}\nSyslog no\n'
                    f'LogLevel debug\nWindowRefresh 1s\n')
            for line in extra:
                f.write(line.replace('@TMP@', tmp) + '\n')
        env = dict(os.environ, BACKFILL_STATE=state)
        if window:
            subprocess.run([backfillctl, 'window', 'open', window],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        logf = open(log, 'w')
        proc = subprocess.Popen([milter, '-f', '-c', conf], stderr=logf,
                                stdout=logf)
        # ready, as milterproc.PrivateMilter.start() waits for it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (unix_listening(sock, proc.pid)
                    and catches(proc.pid, signal.SIGHUP, signal.SIGTERM)
                    or proc.poll() is not None):
                break
            time.sleep(0.02)
        rc = 1
        try:
            if proc.poll() is not None:
                print(f'backfill-milter exited at start ({proc.returncode})')
            else:
                defs = dict(SOCKET='unix:' + sock, MILTER_PID=proc.pid,
                            STATE=state, BACKFILLCTL=backfillctl, TMP=tmp,
                            LIBDIR=HERE, MILTER_LOG=log, MILTER=milter,
                            CONF=conf)
                cmd = ['miltertest', '-w']
                for k, v in defs.items():
                    cmd += ['-D', f'{k}={v}']
                cmd += ['-s', script]
                rc = subprocess.run(cmd, env=env, timeout=600).returncode
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    stop_rc = proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    stop_rc = 'hung'
                if stop_rc != 0:
                    print(f'backfill-milter did not stop cleanly: {stop_rc}')
                    rc = rc or 1
            logf.close()
            if rc != 0:
                with open(log) as f:
                    sys.stdout.write('--- milter log ---\n' + f.read())
    return rc


if __name__ == '__main__':
    sys.exit(main())

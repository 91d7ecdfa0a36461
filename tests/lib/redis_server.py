"""A private redis-server for a test: its own directory, a free loopback
port, no persistence; optionally with requirepass."""

import os
import shutil
import subprocess
import time

from postfix import free_port

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'
REDIS_CLI = shutil.which('redis-cli') or '/usr/bin/redis-cli'


class PrivateRedis:
    def __init__(self, tmp, password=None):
        self.dir = os.path.join(tmp, 'redis')
        os.mkdir(self.dir)
        self.port = free_port()
        self.password = password
        auth = f'default:{password}@' if password else ''
        self.uri = f'redis://{auth}127.0.0.1:{self.port}/0'
        conf = os.path.join(self.dir, 'redis.conf')
        with open(conf, 'w') as f:
            f.write(f'bind 127.0.0.1\nport {self.port}\n'
                    f'protected-mode yes\ndaemonize no\ndir {self.dir}\n'
                    f'save ""\nappendonly no\n'
                    f'logfile {os.path.join(self.dir, "redis.log")}\n')
            if password:
                f.write(f'requirepass {password}\n')
        self.proc = subprocess.Popen([REDIS_SERVER, conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        cli = [REDIS_CLI, '-p', str(self.port)]
        if password:
            cli += ['--no-auth-warning', '-a', password]
        for _ in range(200):
            r = subprocess.run(cli + ['ping'], capture_output=True,
                               text=True)
            if r.stdout.strip() == 'PONG':
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError('redis-server did not start')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

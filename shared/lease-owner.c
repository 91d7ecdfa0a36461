/* Who holds a lease: owner strings, and the one case where a holder can
   be proven dead before its lease expires.

   An owner is "host:pid:space.random":
   - host and pid are for humans reading doveadm backfill status or a
     log line;
   - space names the process id space the pid lives in: a hash of the
     kernel's boot id and the pid namespace.  Two hosts, or two containers
     on one host, that share a hostname (cloned VMs, Kubernetes pods of a
     StatefulSet on different nodes, docker's default hostnames) have
     different spaces, so neither reads the other's pid as its own;
   - random tells apart every owner made, in one process or across pid
     reuse.

   Dead-holder takeover (state.c) asks kill(pid, 0) only for a holder of
   our own space.  A holder of another space, or of an owner string
   written by an older backfill (no space), keeps its lease until it
   expires: waiting out a ttl costs a delay, taking a live lease costs a
   merge running twice. */

#include "state-private.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Hex digits of the space: 64 bits. */
#define SPACE_DIGITS 16

/* The host part of owner strings.  ':' separates the fields, so it cannot
   appear in the host. */
static void local_host(char *buf, size_t size)
{
	char *p;

	if (gethostname(buf, size) < 0 || buf[0] == '\0')
		snprintf(buf, size, "localhost");
	buf[size - 1] = '\0';
	for (p = buf; *p != '\0'; p++) {
		if (*p == ':')
			*p = '_';
	}
}

static bool read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* The pid space of this process as SPACE_DIGITS hex digits.  false when
   it cannot be known (no /proc, e.g. in a chroot): then no holder is
   ever taken as dead. */
static bool local_space(char space[SPACE_DIGITS + 1])
{
	static const char hex[] = "0123456789abcdef";
	char boot_id[64], ns[64], both[160];
	unsigned char md[SHA256_DIGEST_LENGTH];
	ssize_t n;
	int i, len;

	/* The boot id is random per boot of a kernel; containers share it
	   with their host, the pid namespace tells them apart.  A namespace
	   inode is only unique while the namespace lives, which is all that
	   matters: a holder whose namespace is gone is dead anyway. */
	if (!read_small("/proc/sys/kernel/random/boot_id", boot_id,
	                sizeof(boot_id)))
		return false;
	n = readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
	if (n <= 0)
		return false;
	ns[n] = '\0';
	len = snprintf(both, sizeof(both), "%s/%s", boot_id, ns);
	if (len < 0 || (size_t)len >= sizeof(both))
		return false;
	SHA256((const unsigned char *)both, (size_t)len, md);
	for (i = 0; i < SPACE_DIGITS / 2; i++) {
		space[2 * i] = hex[md[i] >> 4];
		space[2 * i + 1] = hex[md[i] & 15];
	}
	space[SPACE_DIGITS] = '\0';
	return true;
}

static uint64_t random64(void)
{
	uint64_t rnd;

	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		rnd = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		      ((uint64_t)getpid() << 40);
	}
	return rnd;
}

void bf_lease_owner(char *buf, size_t size)
{
	char host[256], space[SPACE_DIGITS + 1], tail[64];
	size_t tail_len;

	if (size == 0)
		return;
	local_host(host, sizeof(host));
	/* Unknown space: a random one, which matches nobody's, so that the
	   owner is still unique and never taken as dead. */
	if (!local_space(space))
		snprintf(space, sizeof(space), "%016" PRIx64, random64());
	snprintf(tail, sizeof(tail), ":%ld:%s.%08" PRIx32, (long)getpid(),
	         space, (uint32_t)random64());
	/* A buffer too short loses the end of the host name, never the
	   fields that make the owner unique. */
	tail_len = strlen(tail);
	if (size > tail_len + 1 && strlen(host) > size - tail_len - 1)
		host[size - tail_len - 1] = '\0';
	snprintf(buf, size, "%s%s", host, tail);
}

/* True only when we can prove the holder is gone: its owner string names
   our pid space and no process has its pid.  Anything else (another host
   or container, a string we did not make, EPERM from a live process of
   another user, a zombie) leaves the lease to expire normally. */
bool bf_lease_owner_is_dead(const char *owner)
{
	char space[SPACE_DIGITS + 1];
	const char *last, *pid_start, *p;
	long pid = 0;

	last = strrchr(owner, ':');
	if (last == NULL || last == owner)
		return false;
	/* "space.random" after the last ':' */
	if (strlen(last + 1) <= SPACE_DIGITS || last[1 + SPACE_DIGITS] != '.' ||
	    !local_space(space) || strncmp(last + 1, space, SPACE_DIGITS) != 0)
		return false;
	for (pid_start = last; pid_start > owner && pid_start[-1] != ':';
	     pid_start--)
		;
	if (pid_start == owner || pid_start == last)
		return false;
	for (p = pid_start; p < last; p++) {
		if (*p < '0' || *p > '9' || pid > 0x7fffffffL / 10)
			return false;
		pid = pid * 10 + (*p - '0');
	}
	/* 0 and negative pids would address process groups. */
	if (pid <= 1 || pid == (long)getpid())
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

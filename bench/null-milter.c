/* null-milter: the cheapest filter libmilter allows, the reference that
   bench/milter-throughput.py measures backfill-milter against.

   It asks the MTA to skip every step but end of message and never
   answers the steps it cannot skip, then accepts.  What Postfix loses
   with it attached is what any libmilter filter costs on this machine
   (a connection per SMTP session, a thread per connection, the option
   negotiation and the end-of-message round trip); whatever
   backfill-milter loses beyond that is its own work.

   usage: null-milter unix:/path/to/socket
   The socket is made mode 0666 so that Postfix's smtpd may connect. */

#include <libmilter/mfapi.h>

#include <stdio.h>
#include <sys/stat.h>

static sfsistat null_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                               unsigned long f2, unsigned long f3,
                               unsigned long *pf0, unsigned long *pf1,
                               unsigned long *pf2, unsigned long *pf3)
{
	const unsigned long skip = SMFIP_NOCONNECT | SMFIP_NOHELO |
	                           SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
	                           SMFIP_NOHDRS | SMFIP_NOEOH |
	                           SMFIP_NOUNKNOWN | SMFIP_NODATA;

	(void)ctx;
	(void)f0;
	(void)f2;
	(void)f3;
	*pf0 = 0;
	*pf1 = f1 & skip;
	*pf2 = 0;
	*pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat null_eom(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static struct smfiDesc null_desc = {
        .xxfi_name = "null-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_eom = null_eom,
        .xxfi_negotiate = null_negotiate,
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: null-milter unix:/path/to/socket\n");
		return 64;
	}
	if (smfi_setconn(argv[1]) != MI_SUCCESS ||
	    smfi_register(null_desc) != MI_SUCCESS) {
		fprintf(stderr, "null-milter: cannot set up %s\n", argv[1]);
		return 1;
	}
	(void)umask(0);
	if (smfi_opensocket(1) != MI_SUCCESS) {
		fprintf(stderr, "null-milter: cannot open %s\n", argv[1]);
		return 1;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}

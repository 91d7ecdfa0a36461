/* The Dovecot 2.3 and 2.4 implementations of doveadm-compat.h. */

#include "lib.h"
#include "doveadm-compat.h"

#if DOVECOT_PREREQ(2, 4, 0)
void doveadm_backfill_options(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
                              const char *getopt_args ATTR_UNUSED)
{
}

bool doveadm_backfill_username_column(
        const struct doveadm_mail_cmd_context *ctx)
{
	return !ctx->iterate_single_user;
}
#else
/* The values are read in init(): doveadm 2.3 goes on using the freed
   command context when parse_arg() returns FALSE, so nothing is refused
   here. */
static bool options_accept(struct doveadm_mail_cmd_context *ctx ATTR_UNUSED,
                           int c ATTR_UNUSED)
{
	return TRUE;
}

void doveadm_backfill_options(struct doveadm_mail_cmd_context *ctx,
                              const char *getopt_args)
{
	ctx->getopt_args = getopt_args;
	ctx->v.parse_arg = options_accept;
}

bool doveadm_backfill_username_column(
        const struct doveadm_mail_cmd_context *ctx)
{
	return !ctx->iterate_single_user || ctx->add_username_header;
}
#endif

#ifndef DOVEADM_COMPAT_H
#define DOVEADM_COMPAT_H

/* doveadm's mail command API where Dovecot 2.3 and 2.4 differ, for the
   backfill commands (dovecot-compat.h has the mail plugin's part). */

#include "doveadm-mail.h"

/* The parameters of a mail command's v.init: 2.4 dropped the argument
   list. */
#if DOVECOT_PREREQ(2, 4, 0)
#define DOVEADM_BACKFILL_INIT_ARGS struct doveadm_mail_cmd_context *_ctx
#else
#define DOVEADM_BACKFILL_INIT_ARGS                                             \
	struct doveadm_mail_cmd_context *_ctx,                                 \
	        const char *const *_args ATTR_UNUSED
#endif

/* A v.init function, on either release. */
typedef void doveadm_backfill_init_func(DOVEADM_BACKFILL_INIT_ARGS);

/* Lets the command take the options its doveadm_cmd_ver2 declares, each
   with a short letter as in getopt_args ("p:r:").  init() reads their
   values with doveadm_cmd_param_*() on both releases; 2.3 also passes each
   through getopt to a parse_arg() that must accept it. */
void doveadm_backfill_options(struct doveadm_mail_cmd_context *ctx,
                              const char *getopt_args);

/* Whether doveadm prints the sticky username column: rows printed later
   (by a worker) must set it themselves. */
bool doveadm_backfill_username_column(
        const struct doveadm_mail_cmd_context *ctx);

#endif

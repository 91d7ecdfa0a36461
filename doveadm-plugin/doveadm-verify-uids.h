#ifndef DOVEADM_VERIFY_UIDS_H
#define DOVEADM_VERIFY_UIDS_H

#include "str.h"

struct mail_user;
struct backfill_user;
struct backfill_archive;

struct doveadm_verify_uids {
	/* folders without the archive's UIDVALIDITY or below its UIDNEXT,
	   copies not at their archive UID, folders whose copies cannot be
	   checked */
	unsigned int mismatches;
	/* "what; what" for the command's row (data stack) */
	string_t *list;
	/* with -1: the merge record was read but its cursor is damaged (a
	   failure to look at, not a store to try again later) */
	bool record_damaged;
};

/* Checks the UIDVALIDITY and UIDs the merge promised (doveadm-verify-
   uids.c).  Returns 1 checked (the merge record said which folders), 0
   no merge record, -1 with *error_r when the state store failed or the
   record is damaged (result->record_damaged). */
int doveadm_verify_uids(struct mail_user *user, struct backfill_user *buser,
                        struct backfill_archive *archive,
                        struct doveadm_verify_uids *result,
                        const char **error_r);

#endif

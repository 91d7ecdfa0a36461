#ifndef BACKFILLCTL_PROOF_H
#define BACKFILLCTL_PROOF_H

/* The per-domain proof of backfillctl report: each user's merge record
   from the state store beside the result of `doveadm -f tab backfill
   verify -A`, grouped by domain.  Reading the inputs lives here, apart
   from the reports that show them (proof-report.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"

struct proof_user {
	/* as doveadm backfill prints it (escaped: value-escape.h), the key
	   of verify's rows and of the store's records alike */
	char *user;
	/* the user's own bytes, for the commands a report names: as the
	   store has it, or verify's name unescaped (bf_unescape()); NULL
	   only for a verify name that does not unescape (not doveadm's
	   escaping: an older doveadm printed names as they are) */
	char *real_user;
	/* after the last '@', or from the domain map, or "": lower-case,
	   one trailing dot stripped (Example.COM. is example.com) */
	char *domain;
	bool has_record;
	enum bf_merge_status status;
	uint64_t archived, added, duplicates, skipped;
	/* a count below zero in the store (read back wrapped) or beyond
	   what a store holds: the record's figures are not used */
	bool damaged_record;
	char *last_error;
	bool has_verify;
	char *verify_result;
	uint64_t v_archived, v_present, v_missing, v_symlinks, v_uid_mismatches;
	char *missing_list, *verify_error, *uid_mismatch_list;
	bool damaged_verify; /* a count that is not a number (not empty) */
};

struct proof {
	struct proof_user *v; /* sorted by domain, then user */
	size_t n, cap;
	char **domains;      /* sorted, unique */
	char **domain_files; /* each domain's report file name (no extension) */
	size_t n_domains, cap_domains;
	size_t *domain_first, *domain_n; /* each domain's users in v */
	char **map_user, **map_domain;   /* the domain map, in file order */
	size_t n_map, cap_map;
	/* users by name while reading (index + 1, 0 = free): one lookup
	   per verify line, 100,000s of users */
	size_t *slots, n_slots;
};

/* Every merge record of the store.  -1 with a malloc()ed *error_r. */
int proof_read_store(struct proof *p, const char *uri, char **error_r);

/* The output of `doveadm -f tab backfill verify -A`: a header line of
   column titles (User or Username, Archived, Present, Missing,
   MissingFolderUID, Error, Result, Symlinks, UIDMismatches,
   UIDMismatchList; the last four optional, as older verifies lack them),
   then one line per user, each with as many fields as the header.
   Returns -1 with a malloc()ed reason (naming the line) for input that is
   not that. */
int proof_parse_verify(struct proof *p, const char *data, size_t size,
                       char **error_r);

/* "USER DOMAIN" lines ('#' comments, blank lines): the domain of users
   whose login has no '@' (a site whose logins are local parts). */
int proof_parse_domain_map(struct proof *p, const char *data, size_t size,
                           char **error_r);

/* Assigns domains and sorts; call once after reading the inputs. */
void proof_finish(struct proof *p);

/* The users of one domain: *first_r and the count (binary search). */
size_t proof_domain_users(const struct proof *p, const char *domain,
                          size_t *first_r);

void proof_free(struct proof *p);

/* s escaped with bf_escape() (shared/escape.h, no specials) in a
   malloc()ed string the caller frees. */
char *proof_escape(const char *s, unsigned int flags);

#endif

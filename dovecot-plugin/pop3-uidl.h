#ifndef BACKFILL_POP3_UIDL_H
#define BACKFILL_POP3_UIDL_H

struct mail;

/* The UIDL a POP3 server shows for mail, as Dovecot's pop3 computes it:
   the stored UIDL when the message has one, else format (the user's
   pop3_uidl_format) expanded with the mail's own UID and the given
   UIDVALIDITY of its mailbox.  Returns 0, or -1 with *error_r set. */
int backfill_pop3_uidl_get(struct mail *mail, uint32_t uidvalidity,
                           const char *format, const char **uidl_r,
                           const char **error_r);

/* TRUE when format makes a live message's UIDL from its UID in a way that
   can repeat an archived message's UIDL: the format has %u, and either no
   %v or the live folder reuses the archive folder's UIDVALIDITY. */
bool backfill_pop3_uidl_by_uid(const char *format, uint32_t live_uidvalidity,
                               uint32_t archive_uidvalidity);

/* TRUE when format makes a UIDL from nothing but the UID and the
   UIDVALIDITY (%u, optionally %v): a copy with the archive's UID in a
   folder with the archive's UIDVALIDITY then shows the old server's UIDL
   by itself, without a stored one. */
bool backfill_pop3_uidl_from_uid_only(const char *format);

/* TRUE when format uses the UID or the UIDVALIDITY (%u, %v): a message
   renumbered or a folder given another UIDVALIDITY shows another UIDL
   unless one is stored. */
bool backfill_pop3_uidl_changes_with_uid(const char *format);

#endif

/* POP3 UIDLs as the old server showed them.

   POP3 clients decide what to download by UIDL.  A merged message must
   show the UIDL the old server showed, or every client downloads every old
   message again.  The old server was Dovecot with the same pop3_uidl_format
   (the operator keeps it), so its UIDL is the archive message's stored
   UIDL if any, else the format expanded with the archive's own UID and
   UIDVALIDITY: that is why the archive is opened with its uidlist intact. */

#include "lib.h"
#include "str.h"
#include "strescape.h"
#include "mail-storage.h"
#include "dovecot-compat.h"
#include "pop3-uidl.h"

int backfill_pop3_uidl_get(struct mail *mail, uint32_t uidvalidity,
                           const char *format, const char **uidl_r,
                           const char **error_r)
{
	const char *uidl, *hdr_md5 = "", *filename = "", *guid = "", *error;

	if (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &uidl) == 0 &&
	    *uidl != '\0') {
		*uidl_r = uidl;
		return 0;
	}

	/* Look up only what the format uses: %m reads the header. */
	if (backfill_var_used(format, 'm', "md5") &&
	    mail_get_special(mail, MAIL_FETCH_HEADER_MD5, &hdr_md5) < 0) {
		*error_r = t_strdup_printf(
		        "header MD5 for pop3_uidl_format: %s",
		        mailbox_get_last_internal_error(mail->box, NULL));
		return -1;
	}
	if (backfill_var_used(format, 'f', "filename") &&
	    mail_get_special(mail, MAIL_FETCH_STORAGE_ID, &filename) < 0) {
		*error_r = t_strdup_printf(
		        "file name for pop3_uidl_format: %s",
		        mailbox_get_last_internal_error(mail->box, NULL));
		return -1;
	}
	if (backfill_var_used(format, 'g', "guid") &&
	    mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0) {
		*error_r = t_strdup_printf(
		        "GUID for pop3_uidl_format: %s",
		        mailbox_get_last_internal_error(mail->box, NULL));
		return -1;
	}

	const struct backfill_var vars[] = {
	        {'v', "uidvalidity", dec2str(uidvalidity)},
	        {'u', "uid", t_strdup(dec2str(mail->uid))},
	        {'m', "md5", hdr_md5},
	        {'f', "filename", filename},
	        {'g', "guid", guid},
	        {'\0', NULL, NULL}};
	string_t *str = t_str_new(64);
	if (backfill_var_expand(str, format, vars, &error) < 0) {
		*error_r = t_strdup_printf("expanding pop3_uidl_format=%s: %s",
		                           format, error);
		return -1;
	}
	*uidl_r = str_c(str);
	return 0;
}

bool backfill_pop3_uidl_by_uid(const char *format, uint32_t live_uidvalidity,
                               uint32_t archive_uidvalidity)
{
	if (!backfill_var_used(format, 'u', "uid"))
		return FALSE;
	return !backfill_var_used(format, 'v', "uidvalidity") ||
	       live_uidvalidity == archive_uidvalidity;
}

bool backfill_pop3_uidl_from_uid_only(const char *format)
{
	return backfill_var_used(format, 'u', "uid") &&
	       !backfill_var_used(format, 'm', "md5") &&
	       !backfill_var_used(format, 'f', "filename") &&
	       !backfill_var_used(format, 'g', "guid");
}

bool backfill_pop3_uidl_changes_with_uid(const char *format)
{
	return format != NULL &&
	       (backfill_var_used(format, 'u', "uid") ||
	        backfill_var_used(format, 'v', "uidvalidity"));
}

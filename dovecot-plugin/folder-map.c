/* Mapping the archive's folders to the live account's.

   Old servers named their special folders differently ("Sent Items",
   "Deleted Messages", "INBOX.Spam"), and restored Maildirs carry no
   special-use flags of their own (Dovecot keeps them in the config, not in
   the folder).  So a folder's use is taken from the archive's listing when
   it has one, else from the names that common servers and clients use. */

#include "lib.h"
#include "str.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "private-mailboxes.h"
#include "archive.h"
#include "folder-map.h"
#include "value-escape.h"

static const struct {
	const char *name;
	const char *use;
} special_names[] = {
        {"Sent", "\\Sent"},
        {"Sent Items", "\\Sent"},
        {"Sent Messages", "\\Sent"},
        {"Sent Mail", "\\Sent"},
        {"Drafts", "\\Drafts"},
        {"Draft", "\\Drafts"},
        {"Trash", "\\Trash"},
        {"Deleted Items", "\\Trash"},
        {"Deleted Messages", "\\Trash"},
        {"Junk", "\\Junk"},
        {"Junk E-mail", "\\Junk"},
        {"Junk Email", "\\Junk"},
        {"Spam", "\\Junk"},
        {"Archive", "\\Archive"},
        {"Archives", "\\Archive"},
};

static const char *const special_uses[] = {
        "\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive",
};

/* The first of the uses we map that the listing's special_use names. */
static const char *special_use_pick(const char *special_use)
{
	if (special_use == NULL)
		return NULL;
	const char *const *uses = t_strsplit_spaces(special_use, " ");
	for (; *uses != NULL; uses++) {
		for (unsigned int i = 0; i < N_ELEMENTS(special_uses); i++) {
			if (strcasecmp(*uses, special_uses[i]) == 0)
				return special_uses[i];
		}
	}
	return NULL;
}

static const char *special_use_guess(const char *vname, char sep)
{
	const char *name = strrchr(vname, sep);

	name = name == NULL ? vname : name + 1;
	/* only top-level folders and direct children of INBOX: a
	   "Projects/Trash" folder is just a folder */
	if (name != vname && strncasecmp(vname, "INBOX", 5) != 0)
		return NULL;
	if (name != vname && vname[5] != sep)
		return NULL;
	for (unsigned int i = 0; i < N_ELEMENTS(special_names); i++) {
		if (strcasecmp(name, special_names[i].name) == 0)
			return special_names[i].use;
	}
	return NULL;
}

static const char *vname_translate(const char *vname, char src_sep,
                                   char dest_sep)
{
	string_t *str;

	if (src_sep == dest_sep)
		return vname;
	str = t_str_new(strlen(vname) + 8);
	for (; *vname != '\0'; vname++) {
		if (*vname == src_sep)
			str_append_c(str, dest_sep);
		else if (*vname == dest_sep)
			str_append_c(str, '_');
		else
			str_append_c(str, *vname);
	}
	return str_c(str);
}

/* Dovecot refuses control characters in a new folder's name
   (mailbox_verify_create_name()), while a restored Maildir++ folder may
   decode to one.  '_' as vname_translate() uses for a separator. */
static const char *live_name_printable(const char *name, bool *changed_r)
{
	char *live = NULL;

	*changed_r = FALSE;
	for (size_t i = 0; name[i] != '\0'; i++) {
		if ((unsigned char)name[i] >= 0x20)
			continue;
		if (live == NULL)
			live = t_strdup_noconst(name);
		live[i] = '_';
		*changed_r = TRUE;
	}
	return live == NULL ? name : live;
}

const char *backfill_folder_log_name(const char *name)
{
	return backfill_value_escape(name, BACKFILL_ESCAPE_TEXT);
}

static int folder_cmp(const struct backfill_folder *f1,
                      const struct backfill_folder *f2)
{
	bool inbox1 = strcmp(f1->archive_vname, "INBOX") == 0;
	bool inbox2 = strcmp(f2->archive_vname, "INBOX") == 0;

	if (inbox1 != inbox2)
		return inbox1 ? -1 : 1;
	return strcmp(f1->archive_vname, f2->archive_vname);
}

static const char *live_map(const ARRAY_TYPE(backfill_mailbox_entry) * live,
                            const char *name, const char *use)
{
	const struct backfill_mailbox_entry *f;

	array_foreach(live, f)
	{
		if (strcmp(f->vname, name) == 0 ||
		    (strcasecmp(name, "INBOX") == 0 &&
		     strcasecmp(f->vname, "INBOX") == 0))
			return f->vname;
	}
	if (use == NULL)
		return name;
	array_foreach(live, f)
	{
		const char *f_use = special_use_pick(f->special_use);
		if (f_use != NULL && strcmp(f_use, use) == 0)
			return f->vname;
	}
	return name;
}

int backfill_folder_map_build(struct mail_user *live_user,
                              struct backfill_archive *archive, pool_t pool,
                              ARRAY_TYPE(backfill_folder) * folders_r,
                              const char **error_r)
{
	struct mail_namespace *live_ns =
	        mail_namespace_find_inbox(live_user->namespaces);
	char asep = mail_namespace_get_sep(archive->ns);
	char lsep = mail_namespace_get_sep(live_ns);
	ARRAY_TYPE(backfill_mailbox_entry) live, archived;
	const struct backfill_mailbox_entry *entry;
	struct backfill_folder *folder;
	const char *error;

	/* live: every folder, autocreated ones too, so that the archive's
	   "Sent Items" goes to the Sent folder Dovecot creates on demand */
	if (backfill_private_mailboxes(
	            live_user, BACKFILL_MAILBOXES_SPECIAL_USE,
	            pool_datastack_create(), &live, &error) < 0) {
		*error_r = t_strdup_printf("listing live folders: %s", error);
		return -1;
	}
	if (backfill_private_mailboxes(archive->user,
	                               BACKFILL_MAILBOXES_SELECTABLE |
	                                       BACKFILL_MAILBOXES_SPECIAL_USE |
	                                       BACKFILL_MAILBOXES_SUBSCRIBED,
	                               pool_datastack_create(), &archived,
	                               &error) < 0) {
		*error_r =
		        t_strdup_printf("listing archive folders: %s", error);
		return -1;
	}

	p_array_init(folders_r, pool, 16);
	array_foreach(&archived, entry)
	{
		const char *use = special_use_pick(entry->special_use);
		if (use == NULL)
			use = special_use_guess(entry->vname, asep);
		bool renamed;
		const char *name = live_name_printable(
		        vname_translate(entry->vname, asep, lsep), &renamed);

		folder = array_append_space(folders_r);
		folder->archive_vname = p_strdup(pool, entry->vname);
		folder->live_vname = p_strdup(pool, live_map(&live, name, use));
		folder->live_renamed = renamed;
		folder->special_use = use;
		folder->subscribed =
		        entry->subscribed || strcmp(entry->vname, "INBOX") == 0;
	}
	array_sort(folders_r, folder_cmp);
	return 0;
}

/* Creates the live folder with update, unless it exists.  Returns 1,
   0 when the name is refused (MAIL_ERROR_PARAMS: no retry can create
   it), -1 on error. */
static int live_create(struct mailbox *box,
                       const struct backfill_folder *folder,
                       const struct mailbox_update *update,
                       const char **error_r)
{
	enum mail_error error;

	if (mailbox_create(box, update, FALSE) < 0) {
		const char *why = mailbox_get_last_internal_error(box, &error);
		if (error == MAIL_ERROR_EXISTS)
			return 1;
		*error_r = t_strdup_printf("creating live folder %s: %s",
		                           folder->live_vname, why);
		return error == MAIL_ERROR_PARAMS ? 0 : -1;
	}
	if (folder->subscribed && mailbox_set_subscribed(box, TRUE) < 0) {
		*error_r = t_strdup_printf(
		        "subscribing live folder %s: %s", folder->live_vname,
		        mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	return 1;
}

bool backfill_folder_live_creatable(struct mailbox *box, const char **error_r)
{
	enum mail_error error;

	if (mailbox_verify_create_name(box) == 0)
		return TRUE;
	*error_r = t_strdup_printf(
	        "creating live folder %s: %s", mailbox_get_vname(box),
	        mailbox_get_last_internal_error(box, &error));
	return error != MAIL_ERROR_PARAMS;
}

int backfill_folder_open_live(struct mail_user *live_user,
                              const struct backfill_folder *folder,
                              const struct mailbox_update *create_update,
                              struct event *event, struct mailbox **box_r,
                              const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mail_error error;
	int ret;

	if (folder->live_renamed) {
		e_info(event,
		       "archive folder %s merges into live folder %s: Dovecot refuses control characters in a new folder's name",
		       backfill_folder_log_name(folder->archive_vname),
		       folder->live_vname);
	}
	ns = mail_namespace_find(live_user->namespaces, folder->live_vname);
	box = mailbox_alloc(ns->list, folder->live_vname, 0);
	/* Opening first would let Dovecot create a folder it autocreates
	   (auto = subscribe) with a UIDVALIDITY of its own. */
	if (create_update != NULL &&
	    (ret = live_create(box, folder, create_update, error_r)) <= 0) {
		mailbox_free(&box);
		return ret;
	}
	if (mailbox_open(box) < 0) {
		(void)mailbox_get_last_internal_error(box, &error);
		if (error != MAIL_ERROR_NOTFOUND) {
			*error_r = t_strdup_printf(
			        "opening live folder %s: %s",
			        folder->live_vname,
			        mailbox_get_last_internal_error(box, NULL));
			mailbox_free(&box);
			return -1;
		}
		if ((ret = live_create(box, folder, create_update, error_r)) <=
		    0) {
			mailbox_free(&box);
			return ret;
		}
		if (folder->subscribed &&
		    mailbox_set_subscribed(box, TRUE) < 0) {
			*error_r = t_strdup_printf(
			        "subscribing live folder %s: %s",
			        folder->live_vname,
			        mailbox_get_last_internal_error(box, NULL));
			mailbox_free(&box);
			return -1;
		}
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf(
		        "syncing live folder %s: %s", folder->live_vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	*box_r = box;
	return 1;
}

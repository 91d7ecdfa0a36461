/* Archive folder directories that no folder of the merge reads
   (archive.h, backfill_archive_dirs_uncovered()): a name Dovecot lists
   but cannot open (".A<TAB>folder", ".a&AAA-b"), or does not list at all
   (".inbox", which the vname "inbox" = INBOX hides).  Their messages
   cannot be merged; they must not vanish from the figures either (review
   s6 F3, F5). */

#include "lib.h"
#include "array.h"
#include "mail-storage.h"
#include "mail-namespace.h"
#include "dovecot-compat.h"
#include "archive.h"
#include "folder-map.h"
#include "merge-private.h"
#include "merge-dirs.h"

#define DIRS_NOTE_MARK "messages in archive folder directories no folder"

/* The folders whose directories the merge reads: those Dovecot opens. */
static void folders_readable(struct backfill_merge *m,
                             ARRAY_TYPE(const_string) * names)
{
	const struct backfill_folder *f;
	enum mailbox_existence existence;

	array_foreach(&m->folders, f)
	{
		struct mailbox *box =
		        mailbox_alloc(m->archive->ns->list, f->archive_vname,
		                      MAILBOX_FLAG_READONLY);
		if (mailbox_exists(box, FALSE, &existence) == 0 &&
		    existence == MAILBOX_EXISTENCE_SELECT)
			array_push_back(names, &f->archive_vname);
		mailbox_free(&box);
	}
}

/* last_error keeps what finishing keeps (a skipped folder, symlinks:
   merge.c) and this note once: a merge finishing again after a staged
   restore replaces its own earlier note. */
static void dirs_note(struct backfill_merge *m, const char *text)
{
	const char *prev = m->rec.last_error, *keep = "";

	if (prev != NULL &&
	    (backfill_str_begins(prev, BACKFILL_SKIPPED_NOTE) ||
	     backfill_str_begins(prev, BACKFILL_SYMLINK_NOTE))) {
		const char *mark = strstr(prev, DIRS_NOTE_MARK);
		size_t len = strlen(prev);
		if (mark != NULL) {
			/* the earlier note begins at the last
			   BACKFILL_SKIPPED_NOTE before its mark */
			const char *p = prev, *start = prev;
			while ((p = strstr(p, BACKFILL_SKIPPED_NOTE)) != NULL &&
			       p < mark)
				start = p++;
			len = start - prev;
			while (len > 0 &&
			       (prev[len - 1] == ' ' || prev[len - 1] == ';'))
				len--;
		}
		if (len > 0)
			keep = t_strconcat(t_strndup(prev, len), "; ", NULL);
	}
	const char *note = t_strconcat(keep, BACKFILL_SKIPPED_NOTE, text, NULL);
	i_free(m->rec.last_error);
	m->rec.last_error = i_strdup(backfill_merge_one_line(note));
	m->cursor_dirty = TRUE;
}

void backfill_merge_dirs_unread(struct backfill_merge *m)
{
	ARRAY_TYPE(const_string) names;
	unsigned int messages;
	const char *text, *error;

	t_array_init(&names, array_count(&m->folders) + 1);
	folders_readable(m, &names);
	if (backfill_archive_dirs_unread(m->archive, &names, &messages, &text,
	                                 &error) < 0) {
		e_warning(m->event,
		          "archive folder directories not checked: %s", error);
		return;
	}
	if (text == NULL)
		return;
	e_warning(m->event, "%s", backfill_folder_log_name(text));
	/* Counted at the merge's first finish only: a merge that finishes
	   again after a staged restore (same record) keeps its figures. */
	if (m->rec.finished == 0) {
		m->rec.archived += messages;
		m->rec.skipped += messages;
	}
	if (!m->dry_run)
		dirs_note(m, text);
}

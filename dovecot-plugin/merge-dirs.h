#ifndef BACKFILL_MERGE_DIRS_H
#define BACKFILL_MERGE_DIRS_H

struct backfill_merge;

/* Before the merge finishes: archive folder directories whose messages
   no folder of the merge read are logged, named in last_error and, at
   the record's first finish, counted in archived and skipped. */
void backfill_merge_dirs_unread(struct backfill_merge *m);

#endif

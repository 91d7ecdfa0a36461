#ifndef BACKFILL_PLUGIN_H
#define BACKFILL_PLUGIN_H

/* The mail plugin's entry points (Dovecot's module loader). */
struct module;

extern const char *backfill_plugin_version;
void backfill_plugin_init(struct module *module);
void backfill_plugin_deinit(void);

#endif

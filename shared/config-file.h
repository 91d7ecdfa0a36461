#ifndef BF_CONFIG_FILE_H
#define BF_CONFIG_FILE_H

/* Reader for opendkim.conf-style files: one "Key value" per line, '#'
   starts a comment, blank lines ignored, the value is the rest of the line
   with surrounding blanks removed.  Keys are matched case-insensitively by
   the caller's callback. */

/* Called for every setting.  Return 0 to go on, or -1 with *error_r set
   (malloc()ed) to stop; the reader prefixes it with "FILE:LINE: ". */
typedef int bf_config_setting_cb(const char *key, const char *value,
                                 void *context, char **error_r);

/* Returns 0, or -1 with a malloc()ed "FILE:LINE: reason" (or "FILE: ...")
   in *error_r. */
int bf_config_file_read(const char *path, bf_config_setting_cb *cb,
                        void *context, char **error_r);

#endif

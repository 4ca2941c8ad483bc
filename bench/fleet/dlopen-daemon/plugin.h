/* The interface every libfleet-NAME.so plugin exports. */
#ifndef FLEET_PLUGIN_H
#define FLEET_PLUGIN_H

#include <stddef.h>

/* Write a one-line answer for `input` into `out` (at most `size` bytes, NUL-terminated).
 * Return 0 on success, -1 on failure with a message in `out`. */
typedef int (*fleet_answer_fn)(const char *input, char *out, size_t size);

#define FLEET_ANSWER_SYMBOL "fleet_answer"

#endif

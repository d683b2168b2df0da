/* SPDX-License-Identifier: GPL-2.0-only */
/* Whether bytes are JSON, for the vmdesc trailer of QEMU save files
 * (internal to the engine). */
#ifndef CL_JSON_H
#define CL_JSON_H

#include <stddef.h>

/* 0 if s[0..n) is one JSON value (RFC 8259; whitespace around it), nested
 * at most 64 deep; -1 otherwise. Strings are not checked to be UTF-8. */
int cl_json_check(const char *s, size_t n);

#endif

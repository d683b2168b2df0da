/* SPDX-License-Identifier: GPL-2.0-only */
/* A check of JSON text (see cl_json.h): an iterative scanner with a
 * bounded stack, so that no input recurses or allocates. */
#include "cl_json.h"

#include <string.h>

#define JSON_DEPTH 64

static int json_string(const char *s, size_t n, size_t *i)
{
	const char *esc = "\"\\/bfnrtu";
	unsigned k;

	for ((*i)++; *i < n; (*i)++) {
		unsigned char c = (unsigned char)s[*i];
		if (c == '"') {
			(*i)++;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\')
			continue;
		if (++*i >= n || !strchr(esc, s[*i]) || !s[*i])
			return -1;
		for (k = s[*i] == 'u' ? 0 : 4; k < 4; k++)
			if (++*i >= n || !strchr("0123456789abcdefABCDEF", s[*i]) || !s[*i])
				return -1;
	}
	return -1;
}

static size_t digits(const char *s, size_t n, size_t i)
{
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

static int json_number(const char *s, size_t n, size_t *i)
{
	size_t j = *i + (s[*i] == '-'), k;

	k = digits(s, n, j);
	if (k == j || (s[j] == '0' && k > j + 1))
		return -1;
	if (k < n && s[k] == '.') {
		j = k + 1;
		k = digits(s, n, j);
		if (k == j)
			return -1;
	}
	if (k < n && (s[k] == 'e' || s[k] == 'E')) {
		j = k + 1 + (k + 1 < n && (s[k + 1] == '+' || s[k + 1] == '-'));
		k = digits(s, n, j);
		if (k == j)
			return -1;
	}
	*i = k;
	return 0;
}

static size_t json_ws(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

/* A scalar at s[*i], or the opening of a container (pushed on stack). */
static int json_value(const char *s, size_t n, size_t *i, char *stack, int *depth)
{
	static const char *const words[] = {"true", "false", "null"};
	size_t w;

	if (*i >= n)
		return -1;
	if (s[*i] == '{' || s[*i] == '[') {
		if (*depth >= JSON_DEPTH)
			return -1;
		stack[(*depth)++] = s[(*i)++];
		return 0;
	}
	if (s[*i] == '"')
		return json_string(s, n, i);
	for (w = 0; w < 3; w++)
		if (n - *i >= strlen(words[w]) && !memcmp(s + *i, words[w], strlen(words[w]))) {
			*i += strlen(words[w]);
			return 0;
		}
	return json_number(s, n, i);
}

/* After a value or an opening: a key for an object member, or nothing. */
static int json_key(const char *s, size_t n, size_t *i)
{
	*i = json_ws(s, n, *i);
	if (*i >= n || s[*i] != '"' || json_string(s, n, i))
		return -1;
	*i = json_ws(s, n, *i);
	if (*i >= n || s[*i] != ':')
		return -1;
	*i = json_ws(s, n, *i + 1);
	return 0;
}

int cl_json_check(const char *s, size_t n)
{
	char stack[JSON_DEPTH];
	int depth = 0, fresh;
	size_t i = json_ws(s, n, 0);

	for (;;) {
		if (json_value(s, n, &i, stack, &depth))
			return -1;
		fresh = depth && (s[i - 1] == '{' || s[i - 1] == '[');
		i = json_ws(s, n, i);
		if (fresh && i < n && s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
			depth--;
			i = json_ws(s, n, i + 1);
		} else if (fresh) {
			if (stack[depth - 1] == '{' && json_key(s, n, &i))
				return -1;
			continue;
		}
		/* after a complete value: close containers or take the next member */
		while (depth && i < n && s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
			depth--;
			i = json_ws(s, n, i + 1);
		}
		if (!depth)
			return i == n ? 0 : -1;
		if (i >= n || s[i] != ',')
			return -1;
		i = json_ws(s, n, i + 1);
		if (stack[depth - 1] == '{' && json_key(s, n, &i))
			return -1;
	}
}

/**
 * @file conf_text.h
 * @brief Makes bytes that came from a target safe to print in any report.
 *
 * Reasons and evidence quote the target's answers, which may hold invalid UTF-8 or control
 * characters. Cleaned text is valid UTF-8 with no control character except tab and newline,
 * so it goes into JUnit XML and JSON as it is (after the usual escaping of those formats).
 */
#ifndef CONF_TEXT_H
#define CONF_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cJSON;

/**
 * Copies @p len bytes of @p src into @p dst (capacity @p dstlen, always NUL-terminated),
 * writing each invalid UTF-8 byte, control character (but tab and newline), U+FFFE or
 * U+FFFF as the text `\xNN` (one per byte). Truncates at a character boundary.
 * @return the length written.
 */
size_t conf_text_clean(char *dst, size_t dstlen, const char *src, size_t len);

/**
 * Writes @p s (NULL: nothing) to @p f cleaned (conf_text_clean()) and escaped for XML and
 * HTML text and attribute values: & < > " ' as entities, and with @p whitespace_entities
 * newline and tab too (XML attributes keep them so).
 */
void conf_text_put_markup(FILE *f, const char *s, bool whitespace_entities);

/**
 * Describes an `Authorization` value the upstream received, for a report, without leaking
 * a credential: every occurrence of the caller's @p token becomes `<token>` ("Bearer Bearer
 * <token>"); a value without it (a proxy's own credential) shows only its scheme word and
 * length ("Bearer <another credential, 40 bytes>"); NULL shows as "(no Authorization)".
 * @return @p dst.
 */
char *conf_text_credential(char *dst, size_t dstlen, const char *value, const char *token);

/**
 * @return true when @p got is the strings of the JSON array @p want in order, with only
 * whitespace (or nothing) between and around them: proxies join reasoning elements with
 * "\n", "\n\n" or nothing. Whitespace at either end of an element is skipped as well.
 */
bool conf_text_same_elements(const char *got, const struct cJSON *want);

#endif

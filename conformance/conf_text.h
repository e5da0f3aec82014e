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

#include <stddef.h>

/**
 * Copies @p len bytes of @p src into @p dst (capacity @p dstlen, always NUL-terminated),
 * writing each invalid UTF-8 byte, control character (but tab and newline), U+FFFE or
 * U+FFFF as the text `\xNN` (one per byte). Truncates at a character boundary.
 * @return the length written.
 */
size_t conf_text_clean(char *dst, size_t dstlen, const char *src, size_t len);

#endif

#include "conf_text.h"

#include <stdbool.h>
#include <stdio.h>

/* @return the length of the valid UTF-8 sequence at @p s (at most @p len bytes), 0 when it
 * is not one; rejects overlong forms, surrogates, code points over U+10FFFF, U+FFFE/F. */
static size_t
utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (overlong || surrogate || cp > 0x10FFFF || cp == 0xFFFE || cp == 0xFFFF)
        return 0;
    return n;
}

size_t
conf_text_clean(char *dst, size_t dstlen, const char *src, size_t len)
{
    if (dstlen == 0)
        return 0;
    const unsigned char *s = (const unsigned char *)src;
    size_t out = 0, i = 0;
    while (i < len) {
        size_t n = utf8_sequence(s + i, len - i);
        bool control = n == 1 && (s[i] < 0x20 || s[i] == 0x7F) && s[i] != '\t' && s[i] != '\n';
        if (n == 0 || control) {
            if (out + 4 >= dstlen)
                break;
            snprintf(dst + out, 5, "\\x%02X", s[i]);
            out += 4;
            i++;
            continue;
        }
        if (out + n >= dstlen)
            break;
        for (size_t k = 0; k < n; k++)
            dst[out++] = (char)s[i + k];
        i += n;
    }
    dst[out] = '\0';
    return out;
}

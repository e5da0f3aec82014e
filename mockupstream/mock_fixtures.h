/* Canned upstream content: the model list, HTML error pages, in-band failure
 * payloads and the deterministic answer text. All strings are static. */
#ifndef MOCK_FIXTURES_H
#define MOCK_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

enum mock_html { MOCK_HTML_NONE = 0, MOCK_HTML_CAPTCHA, MOCK_HTML_WAF, MOCK_HTML_GATEWAY };
enum mock_inband { MOCK_INBAND_NONE = 0, MOCK_INBAND_WAF, MOCK_INBAND_QUOTA };

/** The `GET /api/models` body (static JSON). */
const char *mock_models_json(void);
/** @return true when @p id is a listed model id. */
bool mock_model_exists(const char *id);

/** HTML page for @p kind at @p status (0 = the page's usual status). Returns a new
 *  malloc'd string the caller frees; *status_out receives the status to send. */
char *mock_html_page(enum mock_html kind, unsigned status, unsigned *status_out);

/** Payload (one JSON line, static) of an in-band failure event. */
const char *mock_inband_payload(enum mock_inband kind);

/** Maximum number of pieces an answer has. */
#define MOCK_ANSWER_MAX_PIECES 32

/** Longest natural piece of an answer, in bytes (bounds a scripted stream's size). */
#define MOCK_ANSWER_PIECE_MAX_BYTES 32

/**
 * The deterministic answer for a request: pieces whose concatenation is the text.
 * Pieces point into @p storage (caller-provided, at least 512 bytes).
 * @return the number of pieces.
 */
size_t mock_answer_pieces(const char *model, const char *last_message, char *storage,
                          size_t storage_len, const char *pieces[MOCK_ANSWER_MAX_PIECES]);

#endif

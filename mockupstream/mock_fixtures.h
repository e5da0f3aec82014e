/* Canned upstream content: the model list, HTML error pages, in-band failure
 * payloads and the deterministic answer text. All strings are static. */
#ifndef MOCK_FIXTURES_H
#define MOCK_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>

enum mock_html {
    MOCK_HTML_NONE = 0,
    MOCK_HTML_CAPTCHA,
    MOCK_HTML_WAF,
    MOCK_HTML_GATEWAY,
    MOCK_HTML_WAF200
};
enum mock_inband {
    MOCK_INBAND_NONE = 0,
    MOCK_INBAND_WAF,
    MOCK_INBAND_QUOTA,
    MOCK_INBAND_CAPTCHA,
    MOCK_INBAND_IN_PROGRESS,
    MOCK_INBAND_EXPIRED,
    MOCK_INBAND_ERROR
};

/** The `GET /api/models` body (static JSON). */
const char *mock_models_json(void);
/** The `GET /api/v2/models/` body: the same list in the v2 envelope
 *  `{"success":true,"request_id":"<uuid>","data":{"data":[...]}}`; caller frees. */
char *mock_models_v2_json(void);
/** @return true when @p id is a listed model id. */
bool mock_model_exists(const char *id);

/** HTML page for @p kind at @p status (0 = the page's usual status). Returns a new
 *  malloc'd string the caller frees; *status_out receives the status to send. */
char *mock_html_page(enum mock_html kind, unsigned status, unsigned *status_out);

/** Payload (one JSON line) of an in-band failure, in the v1 or the v2 service's words
 *  (@p v2: its host, a fresh `request_id`, quota `num` 1). New string, caller frees. */
char *mock_inband_payload(enum mock_inband kind, bool v2);

/** `{"success":false,"request_id":"<uuid>","data":{"code":C,"details":D}}` with @p code and
 *  @p details. New string, caller frees. */
char *mock_v2_error_json(const char *code, const char *details);

/** The mid-stream error text of the v2 service (`internal_error`). */
#define MOCK_V2_QUOTA_ERROR                                                                        \
    "Allocated quota exceeded, please increase your quota limit. For details, see: "               \
    "https://help.aliyun.com/zh/model-studio/error-code#token-limit"

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

/** As mock_answer_pieces(), from the request's hash plus @p salt (0 is the same answer;
 *  1 is the competing response of a v2 `dual` stream). */
size_t mock_answer_pieces_salted(const char *model, const char *last_message, unsigned salt,
                                 char *storage, size_t storage_len,
                                 const char *pieces[MOCK_ANSWER_MAX_PIECES]);

/** Most reasoning summary elements of an answer. */
#define MOCK_REASONING_MAX 4

/** The reasoning summary of a v2 answer: 2 to 4 short ASCII elements (static strings)
 *  from the same hash as its text. @return their number. */
size_t mock_reasoning(const char *model, const char *message, unsigned salt,
                      const char *out[MOCK_REASONING_MAX]);

/** The summary titles that go with @p n_reasoning elements (1 or 2, static). */
size_t mock_reasoning_titles(size_t n_reasoning, const char *out[MOCK_REASONING_MAX]);

#endif

/**
 * @file docpage.h
 * @brief The API documentation page served at `GET /` (bilingual Chinese/English).
 */
#ifndef QP_DOCPAGE_H
#define QP_DOCPAGE_H

/** The whole page, UTF-8 HTML, NUL-terminated. */
extern const char qp_doc_page[];

#endif

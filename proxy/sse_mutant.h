/**
 * @file sse_mutant.h
 * @brief How the pure stream modules (sse_frame, decode_v1, decode_v2, chunk_emit) see a mutant.
 *
 * They read no global: each has a `mutant` field in its options, present only in builds
 * with QK_MUTANTS, which sse_norm.c sets from qp_mutant_active when it builds a stream.
 * In other builds QP_SSE_MUTANT() is the constant 0 and the field does not exist.
 */
#ifndef QP_SSE_MUTANT_H
#define QP_SSE_MUTANT_H

#include "mutant.h"

#ifdef QK_MUTANTS
/** @return whether @p opts (a module's options) carry the mutant @p name. */
#define QP_SSE_MUTANT(opts, name) ((opts)->mutant == QP_MUT_##name)
#else
#define QP_SSE_MUTANT(opts, name) 0
#endif

#endif

"""The C header of a kernel library: the whole API, documented for a newcomer."""

from __future__ import annotations

from collections.abc import Sequence

from pullback.compiler.export.c_source import ERRORS, entry_signature
from pullback.compiler.export.entry import Array, ExportEntry

_MODES = {
    "value": "the function's value",
    "gradient": "the gradient of the function's (first) result",
    "withgradient": "the function's value and the gradient of its (first) result",
    "pullback": "the value and the vector-Jacobian product with the given cotangents",
    "jacobian": "the Jacobian of the result, one (result size x argument size) matrix "
                "per argument",
    "withjacobian": "the value and the Jacobians of the result",
    "hessian": "the Hessian of the scalar result (forward over reverse)",
    "hessian_reverse": "the Hessian of the scalar result (reverse over reverse)",
    "diaghessian": "the diagonal of the Hessian of the scalar result, per argument",
}


def _shape(a: Array) -> str:
    return "scalar" if a.shape == () else "[" + "][".join(str(d) for d in a.shape) + "]"


def _macros(up: str, entry: ExportEntry, a: Array) -> list[str]:
    base = f"{up}_{entry.name.upper()}_{a.name.upper()}"
    lines = [f"#define {base}_RANK {len(a.shape)}", f"#define {base}_SIZE {a.size}"]
    lines += [f"#define {base}_DIM{i} {d}" for i, d in enumerate(a.shape)]
    return lines


def _entry_doc(library: str, up: str, entry: ExportEntry) -> str:
    lines = [f"/* ---- entry {entry.name}: {_MODES.get(entry.mode, entry.mode)} "
             f"(mode \"{entry.mode}\") ----", " *"]
    lines.append(" * Inputs (row-major; const unless written in place):")
    for a in entry.inputs:
        inplace = ", WRITTEN IN PLACE" if a.written else ""
        lines.append(f" *   {a.name:<20} {a.c_type} {_shape(a)}{inplace}: {a.description}")
    lines.append(" * Outputs (row-major, overwritten):")
    for a in entry.outputs:
        lines.append(f" *   {a.name:<20} {a.c_type} {_shape(a)}: {a.description}")
    peak = entry.memory.get("peak_bytes")
    lines.append(" *")
    lines.append(f" * Memory: {peak} bytes at peak (inputs, outputs and the context's arena);"
                 " the call allocates nothing.")
    lines.append(f" * Returns {up}_OK, or an error code with {library}_context_error(ctx) "
                 "saying why; on an error")
    lines.append(" * before the computation starts no array is touched.")
    lines.append(" */")
    for a in (*entry.inputs, *entry.outputs):
        lines += _macros(up, entry, a)
    lines.append(entry_signature(library, entry) + ";")
    return "\n".join(lines)


def library_header(library: str, entries: Sequence[ExportEntry], target: str,
                   version: str) -> str:
    """The text of `<library>.h`."""
    up = library.upper()
    errors = "\n".join(f"#define {up}_{name} {code}  /* {text} */" for name, code, text in ERRORS)
    body = "\n\n".join(_entry_doc(library, up, e) for e in entries)
    return f"""/* {library}.h: kernel library {library}, exported by pullback {version}.
 *
 * Compiled for target "{target}". Every shape is fixed: the arrays an entry takes and
 * returns are row-major C arrays of exactly the sizes written below (the _SIZE, _RANK
 * and _DIMi macros), float32 as float, float64 as double, int64 as int64_t, bool as
 * uint8_t (0 or 1).
 *
 * Use:
 *   {library}_context *ctx = {library}_context_new();
 *   if (ctx == NULL) {{ puts({library}_context_error(NULL)); return 1; }}
 *   if ({library}_<entry>(ctx, inputs..., outputs...) != {up}_OK)
 *       puts({library}_context_error(ctx));
 *   {library}_context_free(ctx);
 *
 * A context holds all the memory every entry needs, allocated once by
 * {library}_context_new (or placed in memory you supply with {library}_context_new_in),
 * so a call allocates nothing. A context runs one call at a time: use one context per
 * thread (a second call on a busy context returns {up}_ERROR_BUSY); any number of
 * contexts may run at once. {library}_context_new returns NULL when the CPU lacks an
 * instruction set feature the library was compiled for, or memory is short;
 * {library}_context_error(NULL) then says which. Only symbols starting with
 * "{library}_" are exported.
 */
#ifndef {up}_H
#define {up}_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

{errors}

typedef struct {library}_context {library}_context;

/* A new context, or NULL (see {library}_context_error(NULL)). */
{library}_context *{library}_context_new(void);

/* Bytes of memory a context needs (for {library}_context_new_in). */
size_t {library}_context_arena_bytes(void);

/* A context placed in `memory` (at least {library}_context_arena_bytes() bytes, any
 * alignment), for callers that manage memory themselves; NULL if the memory is too
 * small or the CPU is not supported. Free the memory after {library}_context_free. */
{library}_context *{library}_context_new_in(void *memory, size_t bytes);

/* Release a context (the memory of {library}_context_new_in stays the caller's). */
void {library}_context_free({library}_context *ctx);

/* What went wrong in the last failed call on `ctx`, or with NULL, why the last
 * {library}_context_new / _new_in in this thread returned NULL. */
const char *{library}_context_error(const {library}_context *ctx);

/* The meaning of a status code. */
const char *{library}_status_string(int status);

{body}

#ifdef __cplusplus
}}
#endif

#endif /* {up}_H */
"""

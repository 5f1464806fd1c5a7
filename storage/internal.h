/* internal.h -- declarations shared by the storage module's files only.  */
#ifndef SBX_STORAGE_INTERNAL_H
#define SBX_STORAGE_INTERNAL_H

#include "storage/storage.h"

/* Run a one-off statement with text parameters on a pooled connection
 * (for rarely used queries); statements that write queue with the other
 * writers.  */
typedef void (*st_row_fn)(void *ud, int ncols, const char *const *cols);
int st_query(st_db_t *db, const char *sql, const char *const *params, size_t nparams, st_row_fn row,
             void *ud, sbx_error_t *err);

#endif

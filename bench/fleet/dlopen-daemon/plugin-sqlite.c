/* libfleet-sqlite.so: answers with the length of the input and a sum computed by SQLite. */
#include <sqlite3.h>
#include <stdio.h>

#include "plugin.h"

int fleet_answer(const char *input, char *out, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *statement = NULL;
    int result = -1;

    if (sqlite3_open(":memory:", &db) != SQLITE_OK) {
        snprintf(out, size, "sqlite3_open failed");
        goto done;
    }
    if (sqlite3_prepare_v2(db, "SELECT length(?1), 6 * 7", -1, &statement, NULL) != SQLITE_OK) {
        snprintf(out, size, "prepare failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    sqlite3_bind_text(statement, 1, input, -1, SQLITE_STATIC);
    if (sqlite3_step(statement) != SQLITE_ROW) {
        snprintf(out, size, "step failed: %s", sqlite3_errmsg(db));
        goto done;
    }
    snprintf(out, size, "sqlite length=%d answer=%d", sqlite3_column_int(statement, 0),
             sqlite3_column_int(statement, 1));
    result = 0;
done:
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return result;
}

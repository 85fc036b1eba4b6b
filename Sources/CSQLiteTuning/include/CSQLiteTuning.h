#ifndef C_SQLITE_TUNING_H
#define C_SQLITE_TUNING_H

/// Turns off SQLite's memory statistics, whose global mutex every allocation takes; must
/// come before SQLite is first used in the process (later it is refused, harmlessly).
/// Returns SQLite's result code. A C function because `sqlite3_config` is variadic.
int foundry_batch_sqlite_disable_memory_statistics(void);

#endif

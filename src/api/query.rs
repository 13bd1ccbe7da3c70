//! Collection query engine (select, sort, limit, cursor, q, filters): pure, no I/O.

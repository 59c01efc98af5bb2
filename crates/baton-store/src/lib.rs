//! Baton's SQLite store and content-addressed artifact store.

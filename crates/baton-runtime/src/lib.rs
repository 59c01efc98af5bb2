//! Baton's drivers: start, adopt, watch and stop instances.

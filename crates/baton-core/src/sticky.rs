//! The sticky bucket: a fixed, documented, salted hash of a user key to 0..9999.

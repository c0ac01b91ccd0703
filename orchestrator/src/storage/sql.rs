//! SQL shared by both backends.

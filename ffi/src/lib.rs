//! The C ABI of llamette (see issue 4); not yet implemented.

//! Where a request carries its token: the configured sources (a header with a prefix, a
//! cookie, a query parameter) read exactly as the next hop reads them, and the bearer grammar.

pub mod credential;
pub mod sources;

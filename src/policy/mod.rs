//! What a route requires, decided on the path exactly as Envoy forwards it: path reading,
//! rules, scopes, and the CORS answers of denials.

pub mod conditions;
pub mod cors;
pub mod path;
pub mod rate_limits;
pub mod rules;
pub mod scopes;

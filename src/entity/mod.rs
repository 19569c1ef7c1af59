//! sea-orm entities: the shape of the tables, nothing more. Queries live in `crate::store`.

pub mod login_attempt;
pub mod notion_connection;
pub mod oauth_state;
pub mod pending_revocation;
pub mod session;
pub mod session_family;
pub mod user;

//! Who is asking and what they may do: htpasswd Basic authentication (`http.auth`) and
//! access control (`http.accessControl`, zot's policies). The API layer asks both before a
//! handler runs; neither touches storage except to learn whether a tag already exists.

pub mod access;
pub mod backoff;
pub mod bearer;
pub mod htpasswd;
pub mod ldap;
pub mod mtls;

//! Who is asking and what they may do: htpasswd Basic authentication (`http.auth`), API keys
//! (`http.auth.apikey`, looked up in the index) and access control (`http.accessControl`,
//! zot's policies). The API layer asks them before a handler runs; none touches storage
//! except to look up a key (and record its use) or learn whether a tag already exists.

pub mod access;
pub mod apikey;
pub mod backoff;
pub mod bearer;
pub mod htpasswd;
pub mod ldap;
pub mod mtls;

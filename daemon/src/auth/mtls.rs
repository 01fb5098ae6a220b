//! Who a verified client certificate names (mutual TLS, `http.auth.mtls`): zot's identity
//! attributes, tried in order.
//!
//! Rules (zot's):
//! - `CommonName` (the default): the subject's common name (the last one, as Go's
//!   `pkix.Name.CommonName`). `Subject`: the whole subject as Go prints a `pkix.Name`
//!   (`CN=alice,OU=ci,O=Example,C=DE`). `Email`, `URI`, `DNSName`: the subject alternative
//!   name of that kind at its configured index (0-based; default the first).
//! - A URI goes through `uriSanPattern` when set: the pattern must match somewhere in it
//!   (unanchored, as zot's), and its first capture group (or the whole match without one) is
//!   the user; no match means the attribute gives nothing.
//! - The first attribute that gives a non-empty value wins; none: the connection has no
//!   identity, and its requests are anonymous (the certificate still had to verify).
//! - The rustls verifier has checked the chain before this runs; nothing here trusts a
//!   certificate, it only reads names out of one.

use regex::Regex;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::config::{IdentityAttribute, MtlsConfig};

/// `http.auth.mtls`, compiled.
#[derive(Debug)]
pub struct CertIdentity {
    attributes: Vec<IdentityAttribute>,
    uri_pattern: Option<Regex>,
    uri_index: usize,
    dns_index: usize,
    email_index: usize,
}

impl CertIdentity {
    /// Compiles the config (its pattern was checked when the config loaded).
    pub fn new(config: &MtlsConfig) -> Result<CertIdentity, String> {
        let uri_pattern = match &config.uri_san_pattern {
            Some(pattern) => Some(
                Regex::new(pattern)
                    .map_err(|error| format!("http.auth.mtls.uriSanPattern: {error}"))?,
            ),
            None => None,
        };
        Ok(CertIdentity {
            attributes: config.identity_attributes.clone(),
            uri_pattern,
            uri_index: config.uri_san_index,
            dns_index: config.dns_san_index,
            email_index: config.email_san_index,
        })
    }

    /// The user a DER client certificate names, if any.
    pub fn identify(&self, der: &[u8]) -> Option<String> {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        self.attributes
            .iter()
            .filter_map(|attribute| self.value(&certificate, *attribute))
            .find(|value| !value.is_empty())
    }

    fn value(
        &self,
        certificate: &X509Certificate<'_>,
        attribute: IdentityAttribute,
    ) -> Option<String> {
        match attribute {
            IdentityAttribute::CommonName => certificate
                .subject()
                .iter_common_name()
                .last()
                .and_then(|name| name.as_str().ok())
                .map(str::to_owned),
            IdentityAttribute::Subject => {
                Some(berth_trust::pkix_name_string(certificate.subject()))
            }
            IdentityAttribute::Email => san(certificate, self.email_index, |name| match name {
                GeneralName::RFC822Name(email) => Some(email.to_string()),
                _ => None,
            }),
            IdentityAttribute::DnsName => san(certificate, self.dns_index, |name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            }),
            IdentityAttribute::Uri => {
                let uri = san(certificate, self.uri_index, |name| match name {
                    GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                })?;
                match &self.uri_pattern {
                    None => Some(uri),
                    Some(pattern) => {
                        let captures = pattern.captures(&uri)?;
                        let found = captures.get(1).or_else(|| captures.get(0))?;
                        Some(found.as_str().to_owned())
                    }
                }
            }
        }
    }
}

/// The `index`th subject alternative name that `pick` accepts.
fn san(
    certificate: &X509Certificate<'_>,
    index: usize,
    pick: impl Fn(&GeneralName<'_>) -> Option<String>,
) -> Option<String> {
    let extension = certificate.subject_alternative_name().ok()??;
    extension
        .value
        .general_names
        .iter()
        .filter_map(pick)
        .nth(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with these names (rcgen, as the trust tests make theirs).
    fn certificate(names: &[(&str, &str)], sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            let kind = match *kind {
                "CN" => rcgen::DnType::CommonName,
                "O" => rcgen::DnType::OrganizationName,
                "C" => rcgen::DnType::CountryName,
                other => panic!("{other}"),
            };
            dn.push(kind, *value);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    fn identity(config: MtlsConfig) -> CertIdentity {
        CertIdentity::new(&config).expect("compiles")
    }

    fn with(attributes: &[IdentityAttribute]) -> MtlsConfig {
        MtlsConfig {
            identity_attributes: attributes.to_vec(),
            ..MtlsConfig::default()
        }
    }

    #[test]
    fn each_attribute_reads_its_name() {
        use IdentityAttribute::*;
        let uri = |text: &str| rcgen::SanType::URI(text.try_into().expect("ia5"));
        let der = certificate(
            &[("C", "DE"), ("O", "Example"), ("CN", "alice")],
            vec![
                rcgen::SanType::DnsName("one.example".try_into().expect("ia5")),
                rcgen::SanType::Rfc822Name("alice@example.org".try_into().expect("ia5")),
                rcgen::SanType::DnsName("two.example".try_into().expect("ia5")),
                uri("spiffe://example.org/workload/builder"),
                uri("https://example.org/other"),
            ],
        );
        let read = |config: MtlsConfig| identity(config).identify(&der);
        assert_eq!(read(MtlsConfig::default()).as_deref(), Some("alice"));
        assert_eq!(
            read(with(&[Subject])).as_deref(),
            Some("CN=alice,O=Example,C=DE")
        );
        assert_eq!(read(with(&[Email])).as_deref(), Some("alice@example.org"));
        assert_eq!(read(with(&[DnsName])).as_deref(), Some("one.example"));
        let second_dns = MtlsConfig {
            dns_san_index: 1,
            ..with(&[DnsName])
        };
        assert_eq!(read(second_dns).as_deref(), Some("two.example"));
        assert_eq!(
            read(with(&[Uri])).as_deref(),
            Some("spiffe://example.org/workload/builder")
        );
        let spiffe = MtlsConfig {
            uri_san_pattern: Some("spiffe://example.org/workload/(.*)".into()),
            ..with(&[Uri])
        };
        assert_eq!(read(spiffe).as_deref(), Some("builder"));
        let second_uri_no_match = MtlsConfig {
            uri_san_pattern: Some("spiffe://example.org/workload/(.*)".into()),
            uri_san_index: 1,
            ..with(&[Uri, CommonName])
        };
        assert_eq!(
            read(second_uri_no_match).as_deref(),
            Some("alice"),
            "a URI that does not match falls through to the next attribute"
        );
        let out_of_range = MtlsConfig {
            email_san_index: 3,
            ..with(&[Email])
        };
        assert_eq!(read(out_of_range), None);
    }

    #[test]
    fn the_first_attribute_with_a_value_wins_and_none_is_anonymous() {
        use IdentityAttribute::*;
        let bare = certificate(&[("O", "Example")], Vec::new());
        assert_eq!(identity(MtlsConfig::default()).identify(&bare), None);
        assert_eq!(
            identity(with(&[Uri, Email, CommonName, Subject]))
                .identify(&bare)
                .as_deref(),
            Some("O=Example")
        );
        assert_eq!(identity(MtlsConfig::default()).identify(b"not DER"), None);
    }
}

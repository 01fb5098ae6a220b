//! Distinguished names printed the way Go's `pkix.Name.String()` prints them, because that is
//! what notation and zot show users and what they type into trust policies.
//!
//! Rules (Go's `Name.ToRDNSequence` then `RDNSequence.String`): the well-known attributes are
//! regrouped in the fixed order C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER (several
//! values of one type share one RDN joined by `+`; only the last CN and SERIALNUMBER count),
//! other attributes follow one per RDN as `OID=#<hex DER>`, and the whole sequence is printed
//! in reverse, comma-separated, with RFC 2253 escaping.

use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// Go's attribute order and short names, by OID.
const KNOWN_ATTRIBUTES: [(&str, &str); 9] = [
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
];

/// Formats `name` like Go's `pkix.Name.String()`.
pub fn go_string(name: &X509Name) -> String {
    let attributes: Vec<&AttributeTypeAndValue> = name.iter_attributes().collect();
    let mut sequence: Vec<Vec<String>> = Vec::new();
    for (oid, short_name) in KNOWN_ATTRIBUTES {
        let values: Vec<String> = attributes
            .iter()
            .filter(|attribute| attribute.attr_type().to_id_string() == oid)
            .map(|attribute| format!("{short_name}={}", escape(&value_text(attribute))))
            .collect();
        match short_name {
            "CN" | "SERIALNUMBER" => sequence.extend(values.last().cloned().map(|v| vec![v])),
            _ if !values.is_empty() => sequence.push(values),
            _ => {}
        }
    }
    for attribute in &attributes {
        let oid = attribute.attr_type().to_id_string();
        if KNOWN_ATTRIBUTES.iter().any(|(known, _)| *known == oid) {
            continue;
        }
        let value = attribute.attr_value();
        let der = match attribute.as_str() {
            // Go parsed a string type into a Go string and marshals it back as PrintableString
            // when it can, else UTF8String.
            Ok(text) => {
                let tag = if text.bytes().all(go_printable) {
                    0x13
                } else {
                    0x0c
                };
                tlv(tag, text.as_bytes())
            }
            Err(_) => tlv(
                value
                    .header
                    .raw_tag()
                    .map_or(value.tag().0 as u8, |tag| tag[0]),
                value.data,
            ),
        };
        sequence.push(vec![format!("{oid}=#{}", hex::encode(der))]);
    }
    sequence
        .iter()
        .rev()
        .map(|rdn| rdn.join("+"))
        .collect::<Vec<_>>()
        .join(",")
}

fn value_text(attribute: &AttributeTypeAndValue) -> String {
    match attribute.as_str() {
        Ok(text) => text.to_string(),
        Err(_) => String::from_utf8_lossy(attribute.as_slice()).into_owned(),
    }
}

/// Go's `isPrintable` as `asn1.Marshal` uses it (asterisk allowed, ampersand not).
fn go_printable(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b" '()+,-./:=?*".contains(&byte)
}

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut der = vec![tag];
    der.extend(der_length(contents.len()));
    der.extend_from_slice(contents);
    der
}

fn der_length(length: usize) -> Vec<u8> {
    if length < 0x80 {
        return vec![length as u8];
    }
    let bytes: Vec<u8> = length
        .to_be_bytes()
        .into_iter()
        .skip_while(|byte| *byte == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// RFC 2253 escaping as Go does it: `,+"\<>;` anywhere, a space at either end, `#` first.
fn escape(value: &str) -> String {
    let count = value.chars().count();
    let mut out = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let needs_escape = match character {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => index == 0 || index + 1 == count,
            '#' => index == 0,
            _ => false,
        };
        if needs_escape {
            out.push('\\');
        }
        out.push(character);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn subject_of(entries: &[(DnType, &str)]) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut name = DistinguishedName::new();
        for (kind, value) in entries {
            name.push(kind.clone(), DnValue::Utf8String(value.to_string()));
        }
        params.distinguished_name = name;
        let key = KeyPair::generate().expect("key");
        let certificate = params.self_signed(&key).expect("self-signed");
        let (_, parsed) = X509Certificate::from_der(certificate.der()).expect("parses");
        go_string(parsed.subject())
    }

    #[test]
    fn prints_like_go() {
        let cases: Vec<(Vec<(DnType, &str)>, &str)> = vec![
            (
                vec![
                    (DnType::CountryName, "US"),
                    (DnType::OrganizationName, "Example"),
                    (DnType::CommonName, "signer"),
                ],
                "CN=signer,O=Example,C=US",
            ),
            (
                vec![
                    (DnType::CommonName, "signer"),
                    (DnType::CountryName, "US"),
                    (DnType::StateOrProvinceName, "WA"),
                    (DnType::LocalityName, "Seattle"),
                    (DnType::OrganizationName, "Notary"),
                ],
                "CN=signer,O=Notary,L=Seattle,ST=WA,C=US",
            ),
            (
                vec![
                    (DnType::CommonName, "a, b+c"),
                    (DnType::OrganizationName, " spaced "),
                    (DnType::OrganizationalUnitName, "#1"),
                ],
                "CN=a\\, b\\+c,OU=\\#1,O=\\ spaced\\ ",
            ),
            (
                vec![
                    (
                        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                        "a@b.example",
                    ),
                    (DnType::CommonName, "x"),
                ],
                "1.2.840.113549.1.9.1=#0c0b6140622e6578616d706c65,CN=x",
            ),
        ];
        for (entries, expected) in cases {
            assert_eq!(subject_of(&entries), expected);
        }
    }
}

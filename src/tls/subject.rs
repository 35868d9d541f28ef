//! The subject of a client certificate as Kafka sees it: the RFC 2253 string Java's
//! `X500Principal.getName()` gives, which `ssl.principal.mapping.rules` are written against.
//!
//! RFC 2253 writes the relative distinguished names last first (`CN=alice,O=Example` for a
//! certificate whose subject sequence is O then CN), attributes of one RDN joined with `+`,
//! the keywords Java knows (CN, C, L, ST, O, OU, STREET, DC, UID) and a dotted OID with the
//! value's DER in hex (`1.2.840.113549.1.9.1=#16...`) for the rest. Values escape `,+"\<>;`,
//! a leading `#` or space and a trailing space with a backslash. Rules copied from a broker then
//! match the same strings here.

use x509_parser::prelude::{FromDer, X509Certificate};

/// Keywords of the attribute types Java's RFC 2253 output names.
const KEYWORDS: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

/// The RFC 2253 subject of a DER certificate (already verified by the TLS handshake).
pub fn subject_rfc2253(der: &[u8]) -> Result<String, String> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|e| format!("the client certificate cannot be read: {e}"))?;
    let mut rdns = Vec::new();
    for rdn in certificate.subject().iter() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let keyword = KEYWORDS.iter().find(|(id, _)| *id == oid).map(|(_, k)| *k);
            let value = attribute.attr_value();
            attributes.push(match (keyword, attribute.as_str()) {
                (Some(keyword), Ok(text)) => format!("{keyword}={}", escape(text)),
                _ => {
                    let mut der = vec![value.tag().0 as u8];
                    der.extend(der_length(value.data.len()));
                    der.extend_from_slice(value.data);
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}=#{hex}", keyword.map_or(oid, str::to_string))
                }
            });
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn certificate(subject: &[(DnType, &str)]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut name = DistinguishedName::new();
        for (kind, value) in subject {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        params.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn subjects_read_as_java_prints_them() {
        let der = certificate(&[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Example, Inc."),
            (DnType::OrganizationalUnitName, "Eng"),
            (DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_rfc2253(&der).unwrap(), r"CN=alice,OU=Eng,O=Example\, Inc.,C=US");
        let odd = certificate(&[(DnType::CommonName, " #a+b "), (DnType::CustomDnType(vec![2, 5, 4, 99]), "x")]);
        assert_eq!(subject_rfc2253(&odd).unwrap(), r"2.5.4.99=#0c0178,CN=\ #a\+b\ ");
        assert!(subject_rfc2253(b"not a certificate").is_err());
    }
}

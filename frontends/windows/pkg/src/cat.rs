//! Windows catalog files (`.cat`): a Certificate Trust List (CTL) of the package's file
//! hashes inside a PKCS#7 SignedData, DER-encoded with the `der` crate. The catalog is
//! written unsigned (no signer infos); `osslsigncode sign` adds the signature.
//!
//! Layout (Microsoft's CTL as mscat/wintrust read it; the same that osslsigncode's
//! `MsCtlContent` parses):
//!
//! ```text
//! ContentInfo { signedData, [0] SignedData {
//!   version 1, digestAlgorithms {}, contentInfo { szOID_CTL, [0] CertificateTrustList {
//!     subjectUsage { szOID_CATALOG_LIST }, listIdentifier OCTET STRING, thisUpdate UTCTime,
//!     subjectAlgorithm { szOID_CATALOG_LIST_MEMBER, NULL },
//!     trustedSubjects SEQUENCE OF { tag OCTET STRING (UTF-16LE hex of the hash + NUL),
//!       attributes SET OF { CAT_NAMEVALUE "File", CAT_MEMBERINFO, SPC_INDIRECT_DATA } },
//!     [0] extensions { CAT_NAMEVALUE "OSAttr" } } },
//!   signerInfos {} } }
//! ```

use der::asn1::{
    Any, BitString, BmpString, Null, ObjectIdentifier, OctetString, SetOfVec, UtcTime,
};
use der::{Decode, Encode, Sequence, ValueOrd};
use sha2::{Digest, Sha256};

/// PKCS#7 signedData.
pub const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// szOID_CTL.
pub const OID_CTL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.10.1");
/// szOID_CATALOG_LIST.
pub const OID_CATALOG_LIST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.12.1.1");
/// szOID_CATALOG_LIST_MEMBER.
pub const OID_CATALOG_LIST_MEMBER: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.12.1.2");
/// CAT_NAMEVALUE_OBJID.
pub const OID_CAT_NAMEVALUE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.12.2.1");
/// CAT_MEMBERINFO_OBJID.
pub const OID_CAT_MEMBERINFO: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.12.2.2");
/// SPC_INDIRECT_DATA_OBJID.
pub const OID_SPC_INDIRECT_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.4");
/// SPC_PE_IMAGE_DATA_OBJID: the member is a PE image, hashed the Authenticode way.
pub const OID_SPC_PE_IMAGE_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.15");
/// SPC_CAB_DATA_OBJID: used for flat files (the INF), hashed whole.
pub const OID_SPC_CAB_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.2.1.25");
/// SHA-256.
pub const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// The subject GUID of a PE member (wintrust's PE SIP).
pub const SUBJECT_PE: &str = "{C689AAB8-8E78-11D0-8C47-00C04FC295EE}";
/// The subject GUID of a flat-file member.
pub const SUBJECT_FLAT: &str = "{DE351A42-8E59-11D0-8C47-00C04FC295EE}";
/// CAT_NAMEVALUE flags of makecat's "File" and "OSAttr": name-value, plaintext,
/// authenticated (0x10010001).
const NAMEVALUE_FLAGS: i32 = 0x1001_0001;

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TypeAndValue {
    kind: ObjectIdentifier,
    value: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct NameValue {
    tag: BmpString,
    flags: i32,
    value: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct MemberInfo {
    guid: BmpString,
    cert_version: i32,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct DigestInfo {
    algorithm: TypeAndValue,
    digest: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IndirectData {
    data: TypeAndValue,
    digest: DigestInfo,
}

/// SpcPeImageData { flags BIT STRING, file [0] EXPLICIT SpcLink } with the link
/// `file [2] EXPLICIT SpcString { unicode [0] IMPLICIT "" }`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct PeImageData {
    flags: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    file: Any,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence, ValueOrd)]
struct Attribute {
    kind: ObjectIdentifier,
    values: SetOfVec<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TrustedSubject {
    tag: OctetString,
    attributes: SetOfVec<Attribute>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Extension {
    id: ObjectIdentifier,
    value: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TrustList {
    subject_usage: Vec<ObjectIdentifier>,
    list_identifier: OctetString,
    this_update: UtcTime,
    subject_algorithm: TypeAndValue,
    trusted_subjects: Vec<TrustedSubject>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EncapContent {
    kind: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: Any,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SignedData {
    version: i32,
    digest_algorithms: SetOfVec<Any>,
    content: EncapContent,
    signer_infos: SetOfVec<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ContentInfo {
    kind: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: Any,
}

/// How a member is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A PE image: the Authenticode hash.
    Pe,
    /// Any other file: SHA-256 of the whole file.
    Flat,
}

/// One file of the catalog.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its name in the package ("xenbus.sys").
    pub name: String,
    /// How it was hashed.
    pub kind: Kind,
    /// The SHA-256 (Authenticode for PE).
    pub hash: [u8; 32],
}

impl Member {
    /// A member from the file's bytes.
    pub fn from_file(name: &str, data: &[u8]) -> anyhow::Result<Self> {
        let lower = name.to_ascii_lowercase();
        let pe = lower.ends_with(".sys") || lower.ends_with(".dll") || lower.ends_with(".exe");
        let (kind, hash) = if pe {
            (Kind::Pe, crate::pe::authenticode_sha256(data)?)
        } else {
            (Kind::Flat, Sha256::digest(data).into())
        };
        Ok(Member {
            name: name.to_string(),
            kind,
            hash,
        })
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(core::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn any<T: Encode>(v: &T) -> der::Result<Any> {
    Any::from_der(&v.to_der()?)
}

fn name_value(tag: &str, value: &str) -> der::Result<NameValue> {
    Ok(NameValue {
        tag: BmpString::from_utf8(tag)?,
        flags: NAMEVALUE_FLAGS,
        value: OctetString::new(utf16z(value))?,
    })
}

/// The member tag: the hash as upper-case hex in UTF-16LE with a NUL, as makecat.
pub fn member_tag(hash: &[u8]) -> Vec<u8> {
    let hex: String = hash.iter().map(|b| format!("{b:02X}")).collect();
    utf16z(&hex)
}

fn subject(m: &Member) -> der::Result<TrustedSubject> {
    let (guid, data) = match m.kind {
        Kind::Pe => {
            // SpcLink file [2] { SpcString unicode [0] IMPLICIT "" }: a2 02 80 00.
            let link = Any::from_der(&[0xa2, 0x02, 0x80, 0x00])?;
            let pe = PeImageData {
                flags: BitString::from_bytes(&[])?,
                file: link,
            };
            (
                SUBJECT_PE,
                TypeAndValue {
                    kind: OID_SPC_PE_IMAGE_DATA,
                    value: Some(any(&pe)?),
                },
            )
        }
        Kind::Flat => (
            SUBJECT_FLAT,
            TypeAndValue {
                kind: OID_SPC_CAB_DATA,
                value: Some(Any::from_der(&[0xa2, 0x02, 0x80, 0x00])?),
            },
        ),
    };
    let indirect = IndirectData {
        data,
        digest: DigestInfo {
            algorithm: TypeAndValue {
                kind: OID_SHA256,
                value: Some(any(&Null)?),
            },
            digest: OctetString::new(m.hash.to_vec())?,
        },
    };
    let info = MemberInfo {
        guid: BmpString::from_utf8(&format!("{guid}\0"))?,
        cert_version: 512,
    };
    let mut attributes = SetOfVec::new();
    for (kind, value) in [
        (OID_CAT_NAMEVALUE, any(&name_value("File", &m.name)?)?),
        (OID_CAT_MEMBERINFO, any(&info)?),
        (OID_SPC_INDIRECT_DATA, any(&indirect)?),
    ] {
        let mut values = SetOfVec::new();
        values.insert(value)?;
        attributes.insert(Attribute { kind, values })?;
    }
    Ok(TrustedSubject {
        tag: OctetString::new(member_tag(&m.hash))?,
        attributes,
    })
}

/// The unsigned catalog (DER) listing `members`; `os_attr` is the catalog's OSAttr
/// ("2:10.0" = Windows 10 and later); `identifier` its list identifier (16 bytes);
/// `unix_time` its thisUpdate.
pub fn build(
    members: &[Member],
    os_attr: &str,
    identifier: [u8; 16],
    unix_time: u64,
) -> der::Result<Vec<u8>> {
    let mut subjects = Vec::new();
    for m in members {
        subjects.push(subject(m)?);
    }
    let ctl = TrustList {
        subject_usage: vec![OID_CATALOG_LIST],
        list_identifier: OctetString::new(identifier.to_vec())?,
        this_update: UtcTime::from_unix_duration(core::time::Duration::from_secs(unix_time))?,
        subject_algorithm: TypeAndValue {
            kind: OID_CATALOG_LIST_MEMBER,
            value: Some(any(&Null)?),
        },
        trusted_subjects: subjects,
        extensions: Some(vec![Extension {
            id: OID_CAT_NAMEVALUE,
            value: OctetString::new(name_value("OSAttr", os_attr)?.to_der()?)?,
        }]),
    };
    let signed = SignedData {
        version: 1,
        digest_algorithms: SetOfVec::new(),
        content: EncapContent {
            kind: OID_CTL,
            content: any(&ctl)?,
        },
        signer_infos: SetOfVec::new(),
    };
    ContentInfo {
        kind: OID_SIGNED_DATA,
        content: any(&signed)?,
    }
    .to_der()
}

/// The (name, SHA-256) members listed in a catalog, signed or not: for the checks.
pub fn members(cat: &[u8]) -> anyhow::Result<Vec<(String, [u8; 32])>> {
    let ci = ContentInfo::from_der(cat)?;
    anyhow::ensure!(ci.kind == OID_SIGNED_DATA, "not a PKCS#7 SignedData");
    // Signed catalogs carry [0] certificates and a non-empty signerInfos after the
    // content; read just the fields we need with a lenient prefix decode.
    let sd_bytes = ci.content.to_der()?;
    let sd = decode_prefix(&sd_bytes)?;
    anyhow::ensure!(sd.kind == OID_CTL, "content is not a CTL");
    let ctl = TrustList::from_der(&sd.content.to_der()?)?;
    anyhow::ensure!(
        ctl.subject_usage == [OID_CATALOG_LIST],
        "not a catalog list"
    );
    let mut out = Vec::new();
    for s in &ctl.trusted_subjects {
        let mut name = None;
        let mut digest = None;
        for a in s.attributes.iter() {
            let v = a
                .values
                .iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("empty attribute"))?;
            if a.kind == OID_CAT_NAMEVALUE {
                let nv = NameValue::from_der(&v.to_der()?)?;
                let units: Vec<u16> = nv
                    .value
                    .as_bytes()
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                name = Some(String::from_utf16_lossy(&units));
            } else if a.kind == OID_SPC_INDIRECT_DATA {
                let ind = IndirectData::from_der(&v.to_der()?)?;
                anyhow::ensure!(ind.digest.algorithm.kind == OID_SHA256, "not SHA-256");
                digest = Some(<[u8; 32]>::try_from(ind.digest.digest.as_bytes())?);
            }
        }
        let (Some(n), Some(d)) = (name, digest) else {
            anyhow::bail!("a member without a File name or a digest");
        };
        anyhow::ensure!(
            s.tag.as_bytes() == member_tag(&d),
            "member tag != its digest"
        );
        out.push((n, d));
    }
    Ok(out)
}

/// The SignedData's encapsulated content, whatever follows it.
fn decode_prefix(sd: &[u8]) -> anyhow::Result<EncapContent> {
    use der::{Reader, SliceReader};
    let mut r = SliceReader::new(sd)?;
    let content = r.sequence(|r| {
        let _version = i32::decode(r)?;
        let _algs = SetOfVec::<Any>::decode(r)?;
        let content = EncapContent::decode(r)?;
        // certificates [0], crls [1], signerInfos: skip.
        while !r.is_finished() {
            let _ = Any::decode(r)?;
        }
        Ok(content)
    })?;
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Member> {
        vec![
            Member {
                name: "xenbus.sys".into(),
                kind: Kind::Pe,
                hash: [0xab; 32],
            },
            Member {
                name: "xenbus.inf".into(),
                kind: Kind::Flat,
                hash: Sha256::digest(b"[Version]\r\n").into(),
            },
        ]
    }

    #[test]
    fn round_trip_lists_every_member_with_its_hash() {
        let der = build(&sample(), "2:10.0", [7; 16], 1_700_000_000).unwrap();
        // osslsigncode finds the SignedData OID at byte 4 (0x82 length) or 5.
        assert_eq!(der[0], 0x30);
        let off = if der[1] == 0x82 { 4 } else { 5 };
        assert_eq!(
            &der[off..off + 11],
            &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]
        );
        let got = members(&der).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ("xenbus.sys".into(), [0xab; 32]));
        assert_eq!(got[1].0, "xenbus.inf");
        assert_eq!(got[1].1, <[u8; 32]>::from(Sha256::digest(b"[Version]\r\n")));
    }

    #[test]
    fn member_tag_is_utf16_hex_with_nul() {
        assert_eq!(member_tag(&[0x0f, 0xa0]), b"0\0F\0A\x000\0\0\0".to_vec());
    }

    #[test]
    fn a_tampered_digest_is_caught() {
        let mut der = build(&sample(), "2:10.0", [7; 16], 1_700_000_000).unwrap();
        // Flip a byte of the first member's digest (0xab repeated 32 times).
        let pos = der.windows(32).position(|w| w == [0xab; 32]).unwrap();
        der[pos] ^= 1;
        assert!(members(&der).is_err(), "tag and digest disagree");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(members(b"\x30\x03\x02\x01\x01").is_err());
    }
}

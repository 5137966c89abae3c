//! Property tests of the xenstore wire codec: hostile bytes never panic, encode→decode
//! is the identity, incremental decoding agrees with one-shot decoding, and every size
//! limit holds exactly at the limit and fails one past it.

use proptest::prelude::*;
use sluice_abi::xs_wire::*;
use zerocopy::IntoBytes;

/// An owned request, so strategies can generate the data a `Request` borrows.
#[derive(Clone, Debug)]
enum OwnedReq {
    Read(String),
    GetPerms(String),
    Mkdir(String),
    Rm(String),
    Directory(String),
    DirectoryPart(String, u64),
    Write(String, Vec<u8>),
    SetPerms(String, Vec<u8>),
    Watch(String, Vec<u8>),
    Unwatch(String, Vec<u8>),
    ResetWatches,
    TransactionStart,
    TransactionEnd(bool),
    Introduce(u16, u64, u32),
    Release(u16),
    GetDomainPath(u16),
    IsDomainIntroduced(u16),
    Resume(u16),
    SetTarget(u16, u16),
    Control(Vec<u8>),
}

impl OwnedReq {
    fn as_req(&self) -> Request<'_> {
        fn list(b: &[u8]) -> StringList<'_> {
            StringList::new(b).unwrap()
        }
        match self {
            OwnedReq::Read(p) => Request::Read { path: p },
            OwnedReq::GetPerms(p) => Request::GetPerms { path: p },
            OwnedReq::Mkdir(p) => Request::Mkdir { path: p },
            OwnedReq::Rm(p) => Request::Rm { path: p },
            OwnedReq::Directory(p) => Request::Directory { path: p },
            OwnedReq::DirectoryPart(p, o) => Request::DirectoryPart {
                path: p,
                offset: *o,
            },
            OwnedReq::Write(p, v) => Request::Write { path: p, value: v },
            OwnedReq::SetPerms(p, l) => Request::SetPerms {
                path: p,
                perms: list(l),
            },
            OwnedReq::Watch(p, t) => Request::Watch { path: p, token: t },
            OwnedReq::Unwatch(p, t) => Request::Unwatch { path: p, token: t },
            OwnedReq::ResetWatches => Request::ResetWatches,
            OwnedReq::TransactionStart => Request::TransactionStart,
            OwnedReq::TransactionEnd(c) => Request::TransactionEnd { commit: *c },
            OwnedReq::Introduce(d, g, p) => Request::Introduce {
                domid: *d,
                gfn: *g,
                port: *p,
            },
            OwnedReq::Release(d) => Request::Release { domid: *d },
            OwnedReq::GetDomainPath(d) => Request::GetDomainPath { domid: *d },
            OwnedReq::IsDomainIntroduced(d) => Request::IsDomainIntroduced { domid: *d },
            OwnedReq::Resume(d) => Request::Resume { domid: *d },
            OwnedReq::SetTarget(d, t) => Request::SetTarget {
                domid: *d,
                target: *t,
            },
            OwnedReq::Control(a) => Request::Control { args: list(a) },
        }
    }
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "(/[a-zA-Z0-9_@-]{1,12}){1,6}",
        Just("/".to_string()),
        "[a-zA-Z0-9_-][a-zA-Z0-9_@-]{0,11}(/[a-zA-Z0-9_@-]{1,12}){0,5}",
    ]
}

fn watch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        path(),
        Just("@introduceDomain".to_string()),
        Just("@releaseDomain".to_string()),
    ]
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..=255, 0..24)
}

/// NUL-terminated strings, concatenated.
fn string_list(min: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::collection::vec(1u8..=255, 0..12), min..6).prop_map(|items| {
        let mut out = Vec::new();
        for i in items {
            out.extend_from_slice(&i);
            out.push(0);
        }
        out
    })
}

fn perm_list() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        (prop::sample::select(vec!['n', 'r', 'w', 'b']), any::<u16>()),
        1..5,
    )
    .prop_map(|ps| {
        let mut out = Vec::new();
        for (c, d) in ps {
            out.extend_from_slice(format!("{c}{d}").as_bytes());
            out.push(0);
        }
        out
    })
}

fn request() -> impl Strategy<Value = OwnedReq> {
    prop_oneof![
        path().prop_map(OwnedReq::Read),
        path().prop_map(OwnedReq::GetPerms),
        path().prop_map(OwnedReq::Mkdir),
        path().prop_map(OwnedReq::Rm),
        path().prop_map(OwnedReq::Directory),
        (path(), any::<u64>()).prop_map(|(p, o)| OwnedReq::DirectoryPart(p, o)),
        (path(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(p, v)| OwnedReq::Write(p, v)),
        (path(), perm_list()).prop_map(|(p, l)| OwnedReq::SetPerms(p, l)),
        (watch_path(), token()).prop_map(|(p, t)| OwnedReq::Watch(p, t)),
        (watch_path(), token()).prop_map(|(p, t)| OwnedReq::Unwatch(p, t)),
        Just(OwnedReq::ResetWatches),
        Just(OwnedReq::TransactionStart),
        any::<bool>().prop_map(OwnedReq::TransactionEnd),
        (any::<u16>(), any::<u64>(), any::<u32>())
            .prop_map(|(d, g, p)| OwnedReq::Introduce(d, g, p)),
        any::<u16>().prop_map(OwnedReq::Release),
        any::<u16>().prop_map(OwnedReq::GetDomainPath),
        any::<u16>().prop_map(OwnedReq::IsDomainIntroduced),
        any::<u16>().prop_map(OwnedReq::Resume),
        (any::<u16>(), any::<u16>()).prop_map(|(d, t)| OwnedReq::SetTarget(d, t)),
        string_list(1).prop_map(OwnedReq::Control),
    ]
}

fn one_message(buf: &[u8]) -> RawMessage<'_> {
    match decode_frame(buf).expect("frame") {
        Frame::Complete(m, used) => {
            assert_eq!(used, buf.len());
            m
        }
        Frame::Incomplete { needed } => panic!("incomplete, needs {needed}"),
    }
}

fn dec(msg_type: XsMsgType, payload: &[u8]) -> Result<Request<'_>, XsWireError> {
    Request::decode(&RawMessage {
        raw_type: msg_type.raw(),
        req_id: 0,
        tx_id: 0,
        payload,
    })
}

fn header(msg_type: u32, len: u32) -> Vec<u8> {
    XsdSockmsg {
        msg_type,
        req_id: 1,
        tx_id: 0,
        len,
    }
    .as_bytes()
    .to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any bytes: framing and both payload decoders return, never panic, and a complete
    /// frame never claims more than the limit or more bytes than it was given.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600),
                                   ty in 0u32..30) {
        match decode_frame(&bytes) {
            Ok(Frame::Complete(m, used)) => {
                prop_assert!(used <= bytes.len());
                prop_assert!(m.payload.len() <= XENSTORE_PAYLOAD_MAX);
            }
            Ok(Frame::Incomplete { needed }) => prop_assert!(needed > bytes.len()),
            Err(_) => {}
        }
        let m = RawMessage { raw_type: ty, req_id: 0, tx_id: 0, payload: &bytes };
        let req = Request::decode(&m);
        let rsp = Response::decode(&m);
        if XsMsgType::try_from(ty).is_err() {
            prop_assert_eq!(req.unwrap_err().errno(), XsErrno::Enosys);
            prop_assert!(rsp.is_err());
        }
    }

    /// Payloads built from plausible pieces (strings, NULs, digits, path characters)
    /// reach deeper into the decoders than uniform bytes; still no panic.
    #[test]
    fn structured_garbage_never_panics(
        pieces in prop::collection::vec(prop_oneof![
            Just(b"\0".to_vec()), Just(b"/".to_vec()), Just(b"//".to_vec()),
            Just(b"@".to_vec()), Just(b"T".to_vec()), Just(b"OK".to_vec()),
            "[0-9]{1,22}".prop_map(|s| s.into_bytes()),
            "[a-z/]{0,10}".prop_map(|s| s.into_bytes()),
            prop::collection::vec(any::<u8>(), 0..4),
        ], 0..12),
        ty in 0u32..23,
    ) {
        let payload: Vec<u8> = pieces.concat();
        if let Ok(msg_type) = XsMsgType::try_from(ty) {
            let m = RawMessage { raw_type: msg_type.raw(), req_id: 0, tx_id: 0, payload: &payload };
            if let Ok(r) = Request::decode(&m) {
                // Whatever decodes re-encodes to the same type.
                let mut out = vec![0u8; XS_MESSAGE_MAX];
                if let Ok(n) = r.encode(0, 0, &mut out) {
                    prop_assert_eq!(one_message(&out[..n]).msg_type(), Ok(msg_type));
                }
            }
            let _ = Response::decode(&m);
        }
    }

    /// encode → frame → decode gives back the request, header fields included.
    #[test]
    fn request_round_trip(req in request(), req_id in any::<u32>(), tx_id in any::<u32>()) {
        let r = req.as_req();
        let mut out = vec![0u8; XS_MESSAGE_MAX];
        let n = r.encode(req_id, tx_id, &mut out).unwrap();
        let m = one_message(&out[..n]);
        prop_assert_eq!(m.req_id, req_id);
        prop_assert_eq!(m.tx_id, tx_id);
        prop_assert_eq!(m.msg_type(), Ok(r.msg_type()));
        prop_assert_eq!(Request::decode(&m), Ok(r));
    }

    /// The same stream decoded incrementally, in chunks of any sizes, yields the same
    /// messages as one-shot decoding; every proper prefix is `Incomplete`.
    #[test]
    fn incremental_matches_one_shot(reqs in prop::collection::vec(request(), 1..5),
                                    chunks in prop::collection::vec(1usize..40, 1..50)) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let mut out = vec![0u8; XS_MESSAGE_MAX];
            let n = r.as_req().encode(i as u32, 0, &mut out).unwrap();
            expected.push(out[..n].to_vec());
            stream.extend_from_slice(&out[..n]);
        }
        for cut in 0..expected[0].len() {
            let incomplete = matches!(decode_frame(&expected[0][..cut]), Ok(Frame::Incomplete { .. }));
            prop_assert!(incomplete);
        }
        let mut reader = XsReader::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut rest = &stream[..];
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let take = (*sizes.next().unwrap()).min(rest.len());
            let mut chunk = &rest[..take];
            rest = &rest[take..];
            while !chunk.is_empty() {
                let used = reader.push(chunk).unwrap();
                chunk = &chunk[used..];
                if let Some(m) = reader.message() {
                    let mut out = vec![0u8; XS_MESSAGE_MAX];
                    let req = Request::decode(&m).unwrap();
                    let n = req.encode(m.req_id, m.tx_id, &mut out).unwrap();
                    got.push(out[..n].to_vec());
                }
            }
        }
        prop_assert_eq!(got, expected);
    }

    /// The reader given arbitrary bytes in arbitrary chunks never panics and never
    /// holds more than one maximal message.
    #[test]
    fn reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300),
                           chunk in 1usize..50) {
        let mut reader = XsReader::new();
        'outer: for c in bytes.chunks(chunk) {
            let mut c = c;
            while !c.is_empty() {
                match reader.push(c) {
                    Ok(used) => c = &c[used..],
                    Err(_) => break 'outer,
                }
                prop_assert!(reader.buffered() <= XS_MESSAGE_MAX);
                let _ = reader.message();
            }
        }
    }

    /// Decimal fields: the largest value of the field's type decodes, one more does not.
    #[test]
    fn numeric_limits(domid in any::<u16>()) {
        let ok = format!("{domid}\0");
        prop_assert_eq!(dec(XsMsgType::Release, ok.as_bytes()), Ok(Request::Release { domid }));
        let over = format!("{}\0", domid as u32 + 65536);
        prop_assert_eq!(dec(XsMsgType::Release, over.as_bytes()),
                        Err(XsWireError::BadNumber { field: "domid" }));
    }
}

#[test]
fn payload_limit_on_decode() {
    for (len, ok) in [
        (XENSTORE_PAYLOAD_MAX, true),
        (XENSTORE_PAYLOAD_MAX + 1, false),
    ] {
        let mut msg = header(XsMsgType::Read.raw(), len as u32);
        // Only the header: an acceptable length waits for the payload, an oversized one
        // is refused at once.
        match decode_frame(&msg) {
            Ok(Frame::Incomplete { needed }) => {
                assert!(ok);
                assert_eq!(needed, XSD_SOCKMSG_SIZE + len)
            }
            Err(XsWireError::PayloadTooLarge { len: l }) => {
                assert!(!ok);
                assert_eq!(l, len)
            }
            other => panic!("{other:?}"),
        }
        msg.resize(XSD_SOCKMSG_SIZE + len, b'a');
        assert_eq!(decode_frame(&msg).is_ok(), ok);
        let mut reader = XsReader::new();
        assert_eq!(reader.push(&msg).is_ok(), ok);
    }
}

#[test]
fn payload_limit_on_encode() {
    let mut out = vec![0u8; XS_MESSAGE_MAX + 100];
    // "a\0" + value: the value can take the rest of the 4096 bytes and not one more.
    let room = XENSTORE_PAYLOAD_MAX - 2;
    for (len, ok) in [(room, true), (room + 1, false)] {
        let value = vec![b'x'; len];
        let r = Request::Write {
            path: "a",
            value: &value,
        }
        .encode(0, 0, &mut out);
        match r {
            Ok(n) => {
                assert!(ok);
                assert_eq!(n, XS_MESSAGE_MAX);
                let m = one_message(&out[..n]);
                assert_eq!(
                    Request::decode(&m),
                    Ok(Request::Write {
                        path: "a",
                        value: &value
                    })
                );
            }
            Err(e) => {
                assert!(!ok);
                assert_eq!(e, XsWireError::PayloadTooLarge { len: 4097 });
            }
        }
    }
    // A too-small buffer is an error, not a panic.
    let mut small = [0u8; 20];
    assert_eq!(
        Request::Read { path: "/abc/def" }.encode(0, 0, &mut small),
        Err(XsWireError::BufferTooSmall {
            needed: 25,
            available: 20
        })
    );
}

fn long_path(absolute: bool, len: usize) -> String {
    let mut p = String::new();
    if absolute {
        p.push('/');
    }
    while p.len() < len {
        p.push(if p.len() % 10 == 9 { '/' } else { 'a' });
    }
    p.truncate(len);
    if p.ends_with('/') {
        p.pop();
        p.push('b');
    }
    p
}

#[test]
fn path_limits_at_and_past() {
    for (absolute, max) in [
        (true, XENSTORE_ABS_PATH_MAX),
        (false, XENSTORE_REL_PATH_MAX),
    ] {
        let at = long_path(absolute, max);
        let past = long_path(absolute, max + 1);
        assert_eq!(at.len(), max);
        assert_eq!(past.len(), max + 1);
        // Encoder.
        let mut out = vec![0u8; XS_MESSAGE_MAX];
        let n = Request::Read { path: &at }.encode(0, 0, &mut out).unwrap();
        assert_eq!(
            Request::decode(&one_message(&out[..n])),
            Ok(Request::Read { path: &at })
        );
        assert_eq!(
            Request::Read { path: &past }.encode(0, 0, &mut out),
            Err(XsWireError::Path(PathError::TooLong { len: max + 1, max }))
        );
        // Decoder, for every path-carrying request type.
        for t in [
            XsMsgType::Read,
            XsMsgType::Write,
            XsMsgType::Mkdir,
            XsMsgType::Rm,
            XsMsgType::Directory,
            XsMsgType::GetPerms,
        ] {
            let mut payload = past.clone().into_bytes();
            payload.push(0);
            let m = RawMessage {
                raw_type: t.raw(),
                req_id: 0,
                tx_id: 0,
                payload: &payload,
            };
            assert_eq!(
                Request::decode(&m),
                Err(XsWireError::Path(PathError::TooLong { len: max + 1, max })),
                "{t:?}"
            );
        }
        // A watch on a long path, and a watch event naming one.
        let mut payload = past.clone().into_bytes();
        payload.extend_from_slice(b"\0tok\0");
        let m = RawMessage {
            raw_type: XsMsgType::WatchEvent.raw(),
            req_id: 0,
            tx_id: 0,
            payload: &payload,
        };
        assert!(matches!(
            Response::decode(&m),
            Err(XsWireError::Path(PathError::TooLong { .. }))
        ));
    }
}

#[test]
fn home_relative_part_has_the_relative_limit() {
    let home = "/local/domain/7/";
    let at = format!("{home}{}", long_path(false, XENSTORE_REL_PATH_MAX));
    let past = format!("{home}{}", long_path(false, XENSTORE_REL_PATH_MAX + 1));
    assert_eq!(validate_path(at.as_bytes(), false), Ok(PathKind::Absolute));
    assert_eq!(
        validate_path(past.as_bytes(), false),
        Err(PathError::TooLong {
            len: XENSTORE_REL_PATH_MAX + 1,
            max: XENSTORE_REL_PATH_MAX
        })
    );
    // Outside a domain home only the absolute limit applies.
    let other = format!("/vm/{}", long_path(false, XENSTORE_REL_PATH_MAX + 1));
    assert_eq!(
        validate_path(other.as_bytes(), false),
        Ok(PathKind::Absolute)
    );
}

#[test]
fn nul_termination_and_field_rules() {
    use XsMsgType as T;
    assert_eq!(
        dec(T::Read, b"/a"),
        Err(XsWireError::MissingNul { field: "path" })
    );
    assert_eq!(
        dec(T::Read, b""),
        Err(XsWireError::MissingField { field: "path" })
    );
    assert_eq!(
        dec(T::Read, b"/a\0/b\0"),
        Err(XsWireError::TrailingData { msg_type: T::Read })
    );
    assert_eq!(
        dec(T::Watch, b"/a\0tok"),
        Err(XsWireError::MissingNul { field: "token" })
    );
    assert_eq!(
        dec(T::Watch, b"/a\0"),
        Err(XsWireError::MissingField { field: "token" })
    );
    assert_eq!(
        dec(T::Read, b"/a//b\0"),
        Err(XsWireError::Path(PathError::DoubleSlash))
    );
    assert_eq!(
        dec(T::Read, b"/a/\0"),
        Err(XsWireError::Path(PathError::TrailingSlash))
    );
    assert_eq!(
        dec(T::Read, b"/a b\0"),
        Err(XsWireError::Path(PathError::InvalidChar {
            byte: b' ',
            at: 2
        }))
    );
    assert_eq!(
        dec(T::Read, b"@introduceDomain\0"),
        Err(XsWireError::Path(PathError::SpecialNotAllowed))
    );
    assert_eq!(dec(T::TransactionEnd, b"X\0"), Err(XsWireError::BadBool));
    assert_eq!(
        dec(T::SetPerms, b"/a\0q1\0"),
        Err(XsWireError::BadPermission)
    );
    assert_eq!(
        dec(T::SetPerms, b"/a\0"),
        Err(XsWireError::MissingField {
            field: "permission"
        })
    );
    assert_eq!(
        dec(T::SetPerms, b"/a\0r1"),
        Err(XsWireError::MissingNul { field: "list" })
    );
    assert_eq!(
        dec(T::Error, b"EINVAL\0"),
        Err(XsWireError::NotARequest(T::Error))
    );
    assert_eq!(
        dec(T::Write, b"/a\0"),
        Ok(Request::Write {
            path: "/a",
            value: b""
        })
    );
    assert_eq!(
        dec(T::TransactionStart, b"\0"),
        Ok(Request::TransactionStart)
    );
    assert_eq!(
        dec(T::TransactionStart, b"x\0"),
        Err(XsWireError::TrailingData {
            msg_type: T::TransactionStart
        })
    );
    // An unknown type (20 was XS_RESTRICT) frames fine, so the stream survives; decoding
    // it is a typed error a daemon answers with ENOSYS.
    let mut unknown = header(20, 2);
    unknown.extend_from_slice(b"x\0");
    let m = one_message(&unknown);
    let e = Request::decode(&m).unwrap_err();
    assert_eq!(
        e,
        XsWireError::UnknownType(sluice_abi::UnknownValue {
            kind: "xenstore message type",
            value: 20
        })
    );
    assert_eq!(e.errno(), XsErrno::Enosys);
    assert!(!e.is_fatal());
    assert!(XsWireError::PayloadTooLarge { len: 4097 }.is_fatal());
    // Encoder refuses NUL inside string arguments.
    let mut out = [0u8; 64];
    assert_eq!(
        Request::Watch {
            path: "/a",
            token: b"t\0k"
        }
        .encode(0, 0, &mut out),
        Err(XsWireError::FieldContainsNul)
    );
}

#[test]
fn responses_round_trip() {
    let names = StringList::new(b"backend\0device\0").unwrap();
    let perms = StringList::new_perms(b"n0\0r5\0").unwrap();
    let cases: Vec<(XsMsgType, Response<'_>)> = vec![
        (XsMsgType::Write, Response::Ok),
        (XsMsgType::Read, Response::Error(XsErrno::Enoent)),
        (XsMsgType::Read, Response::Value(b"some\0bytes")),
        (XsMsgType::Directory, Response::Directory(names)),
        (
            XsMsgType::Directory,
            Response::Directory(StringList::default()),
        ),
        (
            XsMsgType::DirectoryPart,
            Response::DirectoryPart {
                generation: 42,
                names,
                complete: true,
            },
        ),
        (
            XsMsgType::DirectoryPart,
            Response::DirectoryPart {
                generation: 42,
                names,
                complete: false,
            },
        ),
        (XsMsgType::GetPerms, Response::Perms(perms)),
        (
            XsMsgType::TransactionStart,
            Response::TransactionStarted(u32::MAX),
        ),
        (
            XsMsgType::GetDomainPath,
            Response::DomainPath("/local/domain/3"),
        ),
        (XsMsgType::IsDomainIntroduced, Response::IsIntroduced(false)),
        (
            XsMsgType::Watch,
            Response::WatchEvent {
                path: "@releaseDomain",
                token: b"t",
            },
        ),
    ];
    for (t, rsp) in cases {
        let mut out = vec![0u8; XS_MESSAGE_MAX];
        let n = rsp.encode(t, 9, 0, &mut out).unwrap();
        let m = one_message(&out[..n]);
        assert_eq!(Response::decode(&m), Ok(rsp), "{t:?}");
    }
    for e in XsErrno::ALL {
        assert_eq!(XsErrno::from_name(e.name().as_bytes()), Some(*e));
    }
    assert_eq!(XsErrno::from_name(b"EWHATEVER"), None);
}

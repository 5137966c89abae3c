//! xenstore wire decoding of hostile bytes (a guest's ring, a client's socket).
//!
//! The input is a byte stream fed to `XsReader` in chunks whose sizes come from the
//! first input byte. Checks: nothing panics; the incremental reader and one-shot
//! `decode_frame` agree on the first message; a decoded request or response re-encodes
//! and decodes to itself (the codec accepts nothing it cannot reproduce); no frame
//! exceeds XENSTORE_PAYLOAD_MAX.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_abi::xs_wire::*;

fn check_round_trip(m: &RawMessage<'_>) {
    let mut out = [0u8; XS_MESSAGE_MAX];
    if let Ok(req) = Request::decode(m) {
        let n = req
            .encode(m.req_id, m.tx_id, &mut out)
            .expect("a decoded request re-encodes");
        match decode_frame(&out[..n]) {
            Ok(Frame::Complete(again, used)) => {
                assert_eq!(used, n);
                assert_eq!(Request::decode(&again), Ok(req));
            }
            other => panic!("re-encoded request does not frame: {other:?}"),
        }
    }
    if let Ok(rsp) = Response::decode(m) {
        let request_type = m.msg_type().expect("a decoded response has a known type");
        let n = rsp
            .encode(request_type, m.req_id, m.tx_id, &mut out)
            .expect("a decoded response re-encodes");
        match decode_frame(&out[..n]) {
            Ok(Frame::Complete(again, _)) => assert_eq!(Response::decode(&again), Ok(rsp)),
            other => panic!("re-encoded response does not frame: {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_seed, stream)) = data.split_first() else {
        return;
    };
    let chunk = (chunk_seed as usize % 64) + 1;

    let first = decode_frame(stream);
    if let Ok(Frame::Complete(m, used)) = first {
        assert!(used <= stream.len());
        assert!(m.payload.len() <= XENSTORE_PAYLOAD_MAX);
    }

    let mut reader = XsReader::new();
    let mut index = 0usize;
    let mut rest = stream;
    'feed: while !rest.is_empty() {
        let take = chunk.min(rest.len());
        let mut piece = &rest[..take];
        rest = &rest[take..];
        while !piece.is_empty() {
            match reader.push(piece) {
                Ok(used) => piece = &piece[used..],
                Err(e) => {
                    if index == 0 {
                        assert_eq!(first, Err(e), "reader and decode_frame disagree");
                    }
                    break 'feed;
                }
            }
            if let Some(m) = reader.message() {
                if index == 0 {
                    match first {
                        Ok(Frame::Complete(f, _)) => assert_eq!(f, m),
                        other => panic!("reader found a message, decode_frame {other:?}"),
                    }
                }
                check_round_trip(&m);
                index += 1;
            }
        }
    }
});

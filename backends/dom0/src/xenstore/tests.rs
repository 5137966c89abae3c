use super::*;
use sluice_abi::xs_wire::{RawMessage, XsPermAccess};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

const T: Duration = Duration::from_secs(2);

fn ev(xs: &dyn XenStore) -> Option<WatchEvent> {
    xs.next_watch_event(Duration::from_millis(200)).unwrap()
}

/// Exercises any implementation: both the fake and the real client (over a wire
/// server backed by the fake) must pass.
fn exercise(xs: &dyn XenStore, other: &dyn XenStore) {
    xs.write(XBT_NULL, "/a/b/c", b"hello").unwrap();
    assert_eq!(xs.read(XBT_NULL, "/a/b/c").unwrap(), b"hello");
    assert_eq!(xs.read(XBT_NULL, "/a/b").unwrap(), b"");
    assert!(xs.read(XBT_NULL, "/a/x").unwrap_err().is_enoent());
    xs.mkdir(XBT_NULL, "/a/d").unwrap();
    let mut d = xs.directory(XBT_NULL, "/a").unwrap();
    d.sort();
    assert_eq!(d, ["b", "d"]);
    let perms = [
        XsPermission {
            access: XsPermAccess::None,
            domid: 0,
        },
        XsPermission {
            access: XsPermAccess::Read,
            domid: 5,
        },
    ];
    xs.set_perms(XBT_NULL, "/a/d", &perms).unwrap();
    assert_eq!(xs.get_perms(XBT_NULL, "/a/d").unwrap(), perms);

    xs.watch("/a", "tok").unwrap();
    assert_eq!(
        ev(xs).unwrap(),
        WatchEvent {
            path: "/a".into(),
            token: "tok".into()
        }
    );
    other.write(XBT_NULL, "/a/b/e", b"1").unwrap();
    assert_eq!(ev(xs).unwrap().path, "/a/b/e");
    other.write(XBT_NULL, "/ab", b"1").unwrap(); // not under /a
    assert_eq!(ev(xs), None);
    // A reply and an event interleaved: our own write fires our watch.
    xs.write(XBT_NULL, "/a/f", b"2").unwrap();
    assert_eq!(xs.read(XBT_NULL, "/a/f").unwrap(), b"2");
    assert_eq!(ev(xs).unwrap().path, "/a/f");
    xs.unwatch("/a", "tok").unwrap();
    other.write(XBT_NULL, "/a/g", b"3").unwrap();
    assert_eq!(ev(xs), None);

    // Transactions: isolation, conflict -> EAGAIN, retry helper.
    let tx = xs.transaction_start().unwrap();
    xs.write(tx, "/t/x", b"in-tx").unwrap();
    assert!(other.read(XBT_NULL, "/t/x").unwrap_err().is_enoent());
    other.write(XBT_NULL, "/t/y", b"conflict").unwrap();
    assert!(xs.transaction_end(tx, true).unwrap_err().is_eagain());
    assert!(xs.read(XBT_NULL, "/t/x").unwrap_err().is_enoent());
    let mut tries = 0;
    let v = transaction(xs, 5, |tx| {
        tries += 1;
        if tries == 1 {
            other.write(XBT_NULL, "/t/z", b"again")?;
        }
        xs.write(tx, "/t/x", b"committed")?;
        Ok(7)
    })
    .unwrap();
    assert_eq!((v, tries), (7, 2));
    assert_eq!(xs.read(XBT_NULL, "/t/x").unwrap(), b"committed");
    xs.rm(XBT_NULL, "/t").unwrap();
    assert!(xs.read(XBT_NULL, "/t/x").unwrap_err().is_enoent());
    assert!(xs.rm(XBT_NULL, "/t").unwrap_err().is_enoent());
    assert!(matches!(
        xs.write(XBT_NULL, "relative//bad", b""),
        Err(XsError::Errno(_) | XsError::Wire(_))
    ));
}

#[test]
fn fake_store_semantics() {
    let store = FakeXenStore::new();
    let a = store.connect();
    let b = store.connect();
    exercise(&a, &b);
    store.fail_next_commits(3);
    assert!(transaction(&a, 3, |tx| a.write(tx, "/q", b"1"))
        .unwrap_err()
        .is_eagain());
    assert!(transaction(&a, 3, |tx| a.write(tx, "/q", b"1")).is_ok());
}

/// Serves the xenstore wire protocol on `sock` from a fake connection: the real
/// client's encoding, decoding and reply/event demultiplexing are what is tested.
fn wire_server(mut sock: UnixStream, conn: FakeXsConn) {
    let conn = Arc::new(conn);
    let mut out = sock.try_clone().unwrap();
    let events_conn = conn.clone();
    let out_ev = Arc::new(Mutex::new(sock.try_clone().unwrap()));
    let out_ev2 = out_ev.clone();
    std::thread::spawn(move || loop {
        match events_conn.next_watch_event(Duration::from_millis(50)) {
            Ok(Some(e)) => {
                let mut buf = vec![0u8; XS_MESSAGE_MAX];
                let n = Response::WatchEvent {
                    path: &e.path,
                    token: e.token.as_bytes(),
                }
                .encode(XsMsgType::WatchEvent, 0, 0, &mut buf)
                .unwrap();
                if out_ev2.lock().unwrap().write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(_) => return,
        }
    });
    std::thread::spawn(move || {
        let mut reader = XsReader::new();
        let mut buf = [0u8; 512];
        loop {
            let Ok(n) = sock.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            let mut data = &buf[..n];
            while !data.is_empty() {
                let used = reader.push(data).unwrap();
                data = &data[used..];
                let Some(m) = reader.message() else { continue };
                let m: RawMessage<'_> = m;
                let req = Request::decode(&m).unwrap();
                let tx = m.tx_id;
                let mut scratch: Vec<u8> = Vec::new();
                let reply: Result<Response<'_>, XsError> = match req {
                    Request::Read { path } => conn.read(tx, path).map(|v| {
                        scratch = v;
                        Response::Value(&scratch)
                    }),
                    Request::Write { path, value } => {
                        conn.write(tx, path, value).map(|_| Response::Ok)
                    }
                    Request::Mkdir { path } => conn.mkdir(tx, path).map(|_| Response::Ok),
                    Request::Rm { path } => conn.rm(tx, path).map(|_| Response::Ok),
                    Request::Directory { path } => conn.directory(tx, path).map(|d| {
                        for n in d {
                            scratch.extend_from_slice(n.as_bytes());
                            scratch.push(0);
                        }
                        Response::Directory(StringList::new(&scratch).unwrap())
                    }),
                    Request::GetPerms { path } => conn.get_perms(tx, path).map(|p| {
                        scratch = perms_bytes(&p);
                        Response::Perms(StringList::new_perms(&scratch).unwrap())
                    }),
                    Request::SetPerms { path, perms } => conn
                        .set_perms(tx, path, &parse_perms(perms).unwrap())
                        .map(|_| Response::Ok),
                    Request::Watch { path, token } => conn
                        .watch(path, std::str::from_utf8(token).unwrap())
                        .map(|_| Response::Ok),
                    Request::Unwatch { path, token } => conn
                        .unwatch(path, std::str::from_utf8(token).unwrap())
                        .map(|_| Response::Ok),
                    Request::TransactionStart => {
                        conn.transaction_start().map(Response::TransactionStarted)
                    }
                    Request::TransactionEnd { commit } => {
                        conn.transaction_end(tx, commit).map(|_| Response::Ok)
                    }
                    _ => Err(XsError::Errno(XsErrno::Enosys)),
                };
                let rsp = match reply {
                    Ok(r) => r,
                    Err(XsError::Errno(e)) => Response::Error(e),
                    Err(_) => Response::Error(XsErrno::Einval),
                };
                let mut obuf = vec![0u8; XS_MESSAGE_MAX];
                let n = rsp
                    .encode(m.msg_type().unwrap(), m.req_id, tx, &mut obuf)
                    .unwrap();
                // Split the reply in two writes to exercise reassembly.
                let _g = out_ev.lock().unwrap();
                out.write_all(&obuf[..n / 2]).unwrap();
                out.write_all(&obuf[n / 2..n]).unwrap();
            }
        }
    });
}

#[test]
fn real_client_over_the_wire() {
    let store = FakeXenStore::new();
    let (client_end, server_end) = UnixStream::pair().unwrap();
    wire_server(server_end, store.connect());
    let client = XsClient::from_stream(client_end.try_clone().unwrap(), client_end).unwrap();
    let other = store.connect();
    exercise(&client, &other);
    let _ = T;
}

#[test]
fn real_client_reports_a_closed_connection() {
    let (client_end, server_end) = UnixStream::pair().unwrap();
    let client = XsClient::from_stream(client_end.try_clone().unwrap(), client_end).unwrap();
    drop(server_end);
    assert!(matches!(
        client.read(XBT_NULL, "/x"),
        Err(XsError::Disconnected | XsError::Io(_))
    ));
}

#[test]
fn real_client_refuses_a_malformed_reply() {
    let (client_end, mut server_end) = UnixStream::pair().unwrap();
    let client = XsClient::from_stream(client_end.try_clone().unwrap(), client_end).unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 64];
        let _ = server_end.read(&mut b);
        // A header claiming a 1 MiB payload.
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(XsMsgType::Read as u32).to_le_bytes());
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[12..16].copy_from_slice(&(1u32 << 20).to_le_bytes());
        let _ = server_end.write_all(&h);
        std::thread::sleep(Duration::from_millis(200));
    });
    assert!(matches!(client.read(XBT_NULL, "/x"), Err(XsError::Wire(_))));
}

#[test]
fn backend_device_dirs_lists_every_device_of_every_domain() {
    let store = FakeXenStore::new();
    let xs = store.connect();
    assert!(backend_device_dirs(&xs, "/be/vbd").is_empty());
    for p in [
        "/be/vbd/3/51712/state",
        "/be/vbd/3/51728/state",
        "/be/vbd/7/51712/state",
    ] {
        xs.write(XBT_NULL, p, b"1").unwrap();
    }
    let mut got = backend_device_dirs(&xs, "/be/vbd");
    got.sort();
    assert_eq!(
        got,
        ["/be/vbd/3/51712", "/be/vbd/3/51728", "/be/vbd/7/51712"]
    );
}

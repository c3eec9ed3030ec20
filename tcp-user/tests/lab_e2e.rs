//! End to end in the lab: the real Linux TCP stack in the client namespace connects to
//! synshield (XDP SYN cookies + AF_XDP + the engine + an application) in the shield
//! namespace, whose own kernel has no listener on the protected port.
#![cfg(feature = "root-tests")]
#![allow(clippy::unwrap_used, reason = "a test that fails should panic with a stack trace")]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::Synshield;
use sha2::{Digest as _, Sha256};
use tcp_user::lab::{Lab, LabOptions, SHIELD_IF, SHIELD_V4, SHIELD_V6};

const PORT: u16 = 7;
const IO_TIMEOUT: Duration = Duration::from_mins(1);

/// A lab with synshield serving on the shield side.
struct Served {
    lab: Lab,
    _synshield: Synshield,
}

impl Served {
    fn start(app: &[&str]) -> Served {
        Served::start_with_queues(1, app)
    }

    /// As [`Served::start`], on veth ends with `queues` RX and TX queues.
    fn start_with_queues(queues: u32, app: &[&str]) -> Served {
        let options = LabOptions { client_xdp_pass: true, queues, ..LabOptions::default() };
        let lab = Lab::with_options(&options).unwrap();
        let port = PORT.to_string();
        let synshield = Synshield::start(&lab.shield, &common::serve_args(&port, app));
        Served { lab, _synshield: synshield }
    }

    /// A kernel TCP connection from the client namespace to the shield.
    fn connect(&self, ip: IpAddr) -> TcpStream {
        let s = self
            .lab
            .client
            .enter(move || {
                TcpStream::connect_timeout(&SocketAddr::new(ip, PORT), Duration::from_secs(10))
            })
            .unwrap()
            .unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }

    /// The value of one metric sample (`name` with its labels, as printed).
    fn metric(&self, sample: &str) -> u64 {
        common::metric(&self.lab, sample)
    }

    /// Waits until `sample` has `value` (the engine's state is not an event we can block on,
    /// so poll its metrics, bounded).
    fn wait_metric(&self, sample: &str, value: u64) {
        common::wait_metric(&self.lab, sample, value);
    }

    /// `ss -tan` in the client namespace, lines for the shield's port.
    fn client_sockets(&self) -> Vec<String> {
        let out = self.lab.client.run("ss", &["-tan"]).unwrap();
        out.lines().filter(|l| l.contains(&format!(":{PORT} "))).map(str::to_owned).collect()
    }
}

/// Sends `len` bytes through the echo and checks the SHA-256 of what comes back.
fn echo_roundtrip(stream: TcpStream, len: usize) {
    common::echo_checked(stream, common::pattern(len, len as u64));
}

#[test]
fn echo_over_ipv4_of_1_byte_1_mib_and_64_mib() {
    // Cookie handshakes: the XDP program answers every SYN and admits every third ACK.
    let s = Served::start(&["--app", "echo", "--mode", "cookies"]);
    for len in [1, 1 << 20, 64 << 20] {
        echo_roundtrip(s.connect(SHIELD_V4.into()), len);
    }
    assert!(s.metric("synshield_xdp_frames_total{verdict=\"tx_synack\"}") >= 3);
    assert!(s.metric("synshield_xdp_frames_total{verdict=\"redirect_new_flow\"}") >= 3);
}

#[test]
fn echo_over_ipv6_of_1_byte_1_mib_and_64_mib() {
    // The default (adaptive) mode in peace: stateful handshakes, answered by the shards.
    let s = Served::start(&["--app", "echo"]);
    for len in [1, 1 << 20, 64 << 20] {
        echo_roundtrip(s.connect(SHIELD_V6.into()), len);
    }
    s.wait_metric("synshield_half_open_opened_total", 3);
    assert_eq!(s.metric("synshield_xdp_frames_total{verdict=\"redirect_new_flow\"}"), 0);
}

#[test]
fn two_hundred_concurrent_clients() {
    let s = Served::start(&["--app", "echo"]);
    let streams: Vec<TcpStream> = (0..200)
        .map(|i| s.connect(if i % 2 == 0 { SHIELD_V4.into() } else { SHIELD_V6.into() }))
        .collect();
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut st)| {
            std::thread::spawn(move || {
                let msg = common::pattern(4096, i as u64);
                st.write_all(&msg).unwrap();
                let mut back = vec![0u8; msg.len()];
                st.read_exact(&mut back).unwrap();
                assert_eq!(back, msg, "client {i}");
                st
            })
        })
        .collect();
    let open: Vec<TcpStream> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // All 200 are open at once (counters are published a few times a second: wait for them).
    s.wait_metric("synshield_connections{state=\"ESTABLISHED\"}", 200);
    drop(open);
    s.wait_metric("synshield_connections{state=\"ESTABLISHED\"}", 0);
}

#[test]
fn client_closes_first_and_ends_in_time_wait() {
    let s = Served::start(&["--app", "echo"]);
    let mut c = s.connect(SHIELD_V4.into());
    let local = c.local_addr().unwrap();
    c.write_all(b"x").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"x");
    drop(c);
    // The side that closed first holds TIME-WAIT; the server went CLOSE-WAIT, LAST-ACK, CLOSED.
    let lines = s.client_sockets();
    assert!(
        lines.iter().any(|l| l.starts_with("TIME-WAIT") && l.contains(&local.to_string())),
        "{lines:?}"
    );
    s.wait_metric("synshield_connections_closed_total", 1);
    assert_eq!(s.metric("synshield_connections{state=\"TIME-WAIT\"}"), 0);
}

#[test]
fn server_closes_first_with_http_connection_close() {
    let s = Served::start(&["--app", "http", "--http-body", "hello from synshield\n"]);
    let mut c = s.connect(SHIELD_V4.into());
    let local = c.local_addr().unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: shield\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("hello from synshield\n"));
    drop(c);
    // The server closed first: it holds TIME-WAIT, the client does not.
    s.wait_metric("synshield_connections{state=\"TIME-WAIT\"}", 1);
    let lines = s.client_sockets();
    assert!(
        !lines.iter().any(|l| l.starts_with("TIME-WAIT") && l.contains(&local.to_string())),
        "{lines:?}"
    );
}

#[test]
fn simultaneous_close_goes_through_closing() {
    let s = Served::start(&["--app", "http"]);
    let mut c = s.connect(SHIELD_V4.into());
    let local = c.local_addr().unwrap();
    // Hold back everything the shield sends to the client, so that the client's FIN leaves
    // before it has seen the server's: both sides close without having the other's FIN.
    s.lab.client.run("nft", &["add table inet simclose"]).unwrap();
    s.lab
        .client
        .run("nft", &["add chain inet simclose in { type filter hook input priority 0 ; }"])
        .unwrap();
    s.lab.client.run("nft", &["add rule inet simclose in tcp sport 7 drop"]).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    // The server answers and sends its FIN, which the client does not see: FIN-WAIT-1.
    s.wait_metric("synshield_connections{state=\"FIN-WAIT-1\"}", 1);
    // Now the client's FIN crosses it: the server gets a FIN that does not ACK its own.
    c.shutdown(Shutdown::Write).unwrap();
    s.wait_metric("synshield_connections{state=\"CLOSING\"}", 1);
    s.lab.client.run("nft", &["delete table inet simclose"]).unwrap();
    // Retransmissions deliver the response and the FIN: both sides end in TIME-WAIT.
    let mut response = String::new();
    c.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    s.wait_metric("synshield_connections{state=\"TIME-WAIT\"}", 1);
    let lines = s.client_sockets();
    assert!(
        lines.iter().any(|l| l.starts_with("TIME-WAIT") && l.contains(&local.to_string())),
        "{lines:?}"
    );
}

#[test]
fn half_close_client_shuts_down_writing_and_still_receives() {
    let s = Served::start(&["--app", "echo"]);
    let mut c = s.connect(SHIELD_V6.into());
    let data = common::pattern(300_000, 9);
    c.write_all(&data).unwrap();
    // Our FIN goes out while the echo has most of the data still to send back.
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "every byte after our FIN still arrived, in order");
}

#[test]
fn reset_by_the_client_ends_the_connection() {
    let s = Served::start(&["--app", "echo"]);
    let c = s.connect(SHIELD_V4.into());
    let mut w = c.try_clone().unwrap();
    w.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    (&c).read_exact(&mut one).unwrap();
    // SO_LINGER with a zero timeout: close sends RST instead of FIN.
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt with a valid linger struct on our socket.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&c),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            u32::try_from(size_of::<libc::linger>()).unwrap(),
        )
    };
    assert_eq!(r, 0);
    drop(w);
    drop(c);
    s.wait_metric("synshield_connections_closed_total", 1);
    assert_eq!(s.metric("synshield_connections{state=\"ESTABLISHED\"}"), 0);
    assert_eq!(
        s.metric("synshield_connections{state=\"TIME-WAIT\"}"),
        0,
        "a reset leaves no TIME-WAIT"
    );
}

#[test]
fn curl_gets_the_http_response_over_ipv4_and_ipv6() {
    let s = Served::start(&["--app", "http", "--http-body", "curl works\n"]);
    for url in ["http://198.18.0.2:7/", "http://[2001:2::2]:7/"] {
        let body = s.lab.client.run("curl", &["-sS", "--max-time", "20", url]).unwrap();
        assert_eq!(body, "curl works\n", "{url}");
    }
}

#[test]
fn proxy_splices_to_a_kernel_backend_with_half_close() {
    // The backend: a kernel listener in the shield namespace that answers after the
    // client's FIN with the byte count and its hash.
    let lab_backend_addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let s = Served::start(&["--app", "proxy", "--upstream", "127.0.0.1:8080"]);
    let backend = s.lab.shield.enter(move || TcpListener::bind(lab_backend_addr)).unwrap().unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = backend.accept().unwrap();
        let mut all = Vec::new();
        conn.read_to_end(&mut all).unwrap();
        conn.write_all(format!("backend got {} bytes", all.len()).as_bytes()).unwrap();
        Sha256::digest(&all)
    });
    let mut c = s.connect(SHIELD_V4.into());
    let data = common::pattern(200_000, 3);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "backend got 200000 bytes");
    assert_eq!(server.join().unwrap(), Sha256::digest(&data));
}

#[test]
fn proxy_carries_a_download_far_larger_than_its_buffers() {
    // Server to client is read from the backend straight into the send buffer: it must
    // resume every time the peer's ACKs make room (a stall here once sent nothing at all).
    const DOWNLOAD: usize = 32 << 20;
    let backend_addr: SocketAddr = "127.0.0.1:8081".parse().unwrap();
    let s = Served::start(&["--app", "proxy", "--upstream", "127.0.0.1:8081"]);
    let backend = s.lab.shield.enter(move || TcpListener::bind(backend_addr)).unwrap().unwrap();
    let data = common::pattern(DOWNLOAD, 11);
    let expected = Sha256::digest(&data);
    let server = std::thread::spawn(move || {
        let (mut conn, _) = backend.accept().unwrap();
        let mut request = [0u8; 4];
        conn.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"GET\n");
        conn.write_all(&data).unwrap();
    });
    let mut c = s.connect(SHIELD_V4.into());
    c.write_all(b"GET\n").unwrap();
    let mut got = Vec::with_capacity(DOWNLOAD);
    c.read_to_end(&mut got).unwrap();
    server.join().unwrap();
    assert_eq!(got.len(), DOWNLOAD);
    assert_eq!(Sha256::digest(&got), expected);
}

#[test]
fn two_rx_queues_each_serve_their_flows() {
    // One shard per RX queue: the client spreads its flows over the veth's two queues by
    // their hash, each shard admits and serves the ones that land on its queue.
    let s = Served::start_with_queues(2, &[]);
    let rx_queues = s.lab.shield.run("ls", &[&format!("/sys/class/net/{SHIELD_IF}/queues")]);
    assert!(rx_queues.unwrap().contains("rx-1"), "the lab's veth has two RX queues");
    for i in 0..64u64 {
        let mut c = s.connect(SHIELD_V4.into());
        let data = common::pattern(2000, i + 1);
        c.write_all(&data).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, data, "connection {i}");
    }
    // Shards publish their counters four times a second.
    s.wait_metric("synshield_connections_opened_total", 64);
    let (q0, q1) = (
        s.metric("synshield_queue_connections_opened_total{queue=\"0\"}"),
        s.metric("synshield_queue_connections_opened_total{queue=\"1\"}"),
    );
    assert_eq!(q0 + q1, 64);
    assert!(q0 > 0 && q1 > 0, "flows landed on both queues: {q0} and {q1}");
}

#[test]
fn a_new_handshake_reopens_a_tuple_in_time_wait() {
    // A new SYN takes the tuple over (RFC 6191) in the default mode; a cookie's third ACK
    // (REOPEN) does in cookie mode.
    for mode in ["adaptive", "cookies"] {
        new_handshake_reopens_time_wait(mode);
    }
}

fn new_handshake_reopens_time_wait(mode: &str) {
    let s = Served::start(&["--app", "http", "--mode", mode]);
    // The client uses one fixed source port for both connections.
    let connect_from = |port: u16| {
        s.lab
            .client
            .enter(move || {
                let sock = libc_socket_bound_to(port);
                sock.connect_timeout(
                    &SocketAddr::new(SHIELD_V4.into(), PORT),
                    Duration::from_secs(10),
                )
                .map(|()| sock)
            })
            .unwrap()
            .unwrap()
    };
    for round in 0..2 {
        let mut c: TcpStream = connect_from(40_007).into();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        c.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{mode} round {round}: {response}");
        drop(c);
        // The server closed first: its side of the tuple is in TIME-WAIT (2 MSL = 60 s), and
        // the second handshake took that tuple over.
        s.wait_metric("synshield_connections_reopened_total", round);
        s.wait_metric("synshield_connections{state=\"TIME-WAIT\"}", 1);
    }
    assert_eq!(s.metric("synshield_connections_opened_total"), 2);
}

/// A client socket bound to `port` with SO_REUSEADDR, so it can be bound again at once.
fn libc_socket_bound_to(port: u16) -> socket2_like::Socket {
    socket2_like::Socket::bound(port)
}

/// The few lines of socket2 this test needs, on std and libc.
mod socket2_like {
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    use std::time::Duration;

    pub struct Socket(OwnedFd);

    impl Socket {
        pub fn bound(port: u16) -> Socket {
            // SAFETY: plain socket/setsockopt/bind calls on a fresh fd with valid arguments.
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                assert!(fd >= 0);
                let fd = OwnedFd::from_raw_fd(fd);
                let one: libc::c_int = 1;
                let size = u32::try_from(size_of::<libc::c_int>()).unwrap();
                let r = libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_REUSEADDR,
                    std::ptr::from_ref(&one).cast(),
                    size,
                );
                assert_eq!(r, 0);
                let addr = libc::sockaddr_in {
                    sin_family: u16::try_from(libc::AF_INET).unwrap(),
                    sin_port: port.to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([198, 18, 0, 1]) },
                    sin_zero: [0; 8],
                };
                let size = u32::try_from(size_of::<libc::sockaddr_in>()).unwrap();
                let r = libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&addr).cast(), size);
                assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
                Socket(fd)
            }
        }

        pub fn connect_timeout(&self, to: &SocketAddr, _timeout: Duration) -> std::io::Result<()> {
            let SocketAddr::V4(v4) = to else { panic!("IPv4 only") };
            let addr = libc::sockaddr_in {
                sin_family: u16::try_from(libc::AF_INET).unwrap(),
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                sin_zero: [0; 8],
            };
            let size = u32::try_from(size_of::<libc::sockaddr_in>()).unwrap();
            // SAFETY: connect on our fd with a valid sockaddr_in (blocking; the kernel's own
            // SYN retries bound it).
            let r = unsafe {
                libc::connect(self.0.as_raw_fd(), std::ptr::from_ref(&addr).cast(), size)
            };
            if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        }
    }

    impl From<Socket> for TcpStream {
        fn from(s: Socket) -> TcpStream {
            TcpStream::from(s.0)
        }
    }
}

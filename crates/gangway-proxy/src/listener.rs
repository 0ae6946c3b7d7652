//! Binding listening sockets.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// How many connections may wait to be accepted, as nginx's default on Linux.
const BACKLOG: i32 = 511;

/// Binds `port` on every IPv4 and IPv6 address with one dual-stack socket
/// (the equivalent of nginx's `listen 80; listen [::]:80;`), or on IPv4
/// alone where the host has IPv6 disabled.
pub fn bind_dual_stack(port: u16) -> io::Result<TcpListener> {
    match bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)), false) {
        Ok(listener) => Ok(listener),
        Err(e) if e.raw_os_error() == Some(libc_eafnosupport()) => {
            bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
        }
        Err(e) => Err(e),
    }
}

/// Binds one address (for the admin listener and tests).
pub fn bind(addr: SocketAddr, v6_only: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `EAFNOSUPPORT` on Linux: the kernel was built or booted without IPv6.
const fn libc_eafnosupport() -> i32 {
    97
}

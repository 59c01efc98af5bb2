//! The hand-over's sockets and lines, between two ends of a socket pair.

use super::channel::Channel;
use super::sockets::Named;
use super::*;

use std::os::fd::{AsFd, OwnedFd};
use tokio::net::UnixStream;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn listeners_cross_with_their_names_and_keep_their_queue() {
    let (a, b) = UnixStream::pair().unwrap();
    let old = Sockets::default();
    let api = old
        .listen("api", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let web = old
        .listen("app:web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let web_addr = web.local_addr().unwrap();
    // A client connects before the hand-over and is accepted by the new process.
    let mut client = tokio::net::TcpStream::connect(web_addr).await.unwrap();
    let sender = Channel::new(a);
    for named in old.offer().unwrap() {
        let line = format!("listener {} {}", named.name, named.addr);
        sender.send(&line, Some(named.fd.as_fd())).await.unwrap();
    }
    sender.send("offered 1", None).await.unwrap();
    drop((api, web, old));

    let mut receiver = Channel::new(b);
    let new = Sockets::default();
    loop {
        let line = receiver.recv().await.unwrap();
        let (word, rest) = split_word(&line);
        if word == "offered" {
            break;
        }
        let (name, addr) = split_word(rest);
        let fd = receiver.fds.pop_front().unwrap();
        new.lock().inherited.push(Named {
            name: name.into(),
            addr: addr.parse().unwrap(),
            fd,
        });
    }
    assert_eq!(new.unclaimed(), ["api", "app:web"]);
    let taken = new
        .listen("app:web", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(taken.local_addr().unwrap(), web_addr, "the same socket");
    let (mut server, _) = taken.accept().await.unwrap();
    server.write_all(b"hi").await.unwrap();
    let mut got = [0u8; 2];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hi");
    assert_eq!(new.unclaimed(), ["api"]);
    new.close_unclaimed();
    assert!(new.unclaimed().is_empty());
}

#[tokio::test]
async fn a_changed_address_is_bound_anew() {
    let new = Sockets::default();
    let old = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    new.lock().inherited.push(Named {
        name: "api".into(),
        addr: "127.0.0.1:1".parse().unwrap(),
        fd: OwnedFd::from(old),
    });
    let l = new
        .listen("api", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert_ne!(l.local_addr().unwrap().port(), 1);
    assert_eq!(new.unclaimed(), ["api"], "the old socket is not taken");
}

#[test]
fn lines_split_into_a_word_and_the_rest() {
    assert_eq!(
        split_word("refuse bad config here"),
        ("refuse", "bad config here")
    );
    assert_eq!(split_word("take"), ("take", ""));
}

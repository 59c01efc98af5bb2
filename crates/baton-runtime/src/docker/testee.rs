//! The program the docker driver's tests run in containers: a small C program compiled with the
//! C compiler Rust itself links with, packed into a `FROM scratch` image with its libraries.
//!
//! `testee serve` listens on 127.0.0.1:$PORT, answers each connection with
//! `hello from $BATON_INSTANCE` and logs `served`, and exits 0 on SIGTERM;
//! `testee ignore-term` ignores SIGTERM; `testee write PATH` creates PATH and exits 0, or 1 if
//! it cannot.

use std::path::Path;
use std::process::Command;

use super::Docker;
use super::testing::{ImageBuild, TestImage};

const SOURCE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t terminated = 0;
static void on_term(int sig) { (void)sig; terminated = 1; }

static int serve(void) {
    const char *port = getenv("PORT");
    const char *instance = getenv("BATON_INSTANCE");
    if (!port) { fprintf(stderr, "no PORT\n"); return 2; }
    signal(SIGTERM, on_term);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "cannot listen on 127.0.0.1:%s: %s\n", port, strerror(errno));
        return 1;
    }
    printf("listening on 127.0.0.1:%s\n", port);
    fprintf(stderr, "a line on stderr\n");
    while (!terminated) {
        struct pollfd ready = { fd, POLLIN, 0 };
        if (poll(&ready, 1, 50) <= 0) continue;
        int conn = accept(fd, NULL, NULL);
        if (conn < 0) continue;
        dprintf(conn, "hello from %s\n", instance ? instance : "?");
        close(conn);
        printf("served\n");
    }
    printf("got SIGTERM\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve();
    if (argc >= 2 && strcmp(argv[1], "ignore-term") == 0) {
        signal(SIGTERM, SIG_IGN);
        printf("ignoring SIGTERM\n");
        for (;;) pause();
    }
    if (argc >= 3 && strcmp(argv[1], "write") == 0) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("write failed: %s\n", strerror(errno)); return 1; }
        printf("write ok\n");
        return 0;
    }
    fprintf(stderr, "usage: testee serve | ignore-term | write PATH\n");
    return 2;
}
"#;

/// Compiles the testee in `dir` and builds its image (`CMD ["/testee", "serve"]`).
pub(crate) async fn testee_image(docker: &Docker, dir: &Path) -> TestImage {
    let source = dir.join("testee.c");
    let binary = dir.join("testee");
    std::fs::write(&source, SOURCE).unwrap();
    // `cc` is what rustc links with, so it is there wherever this crate builds.
    let output = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("the C compiler `cc` runs");
    assert!(
        output.status.success(),
        "cannot compile the testee: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ImageBuild::new()
        .binary(&binary, "/testee")
        .cmd(&["/testee", "serve"])
        .build(docker, "baton-runtime-testee")
        .await
}

//! One S3 client per runtime thread: requests alternate between two current-thread runtimes
//! on two threads, each idle while the other works (the pattern that hangs a shared pool),
//! and a thread that runs one runtime after another.
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;

use super::{bucket, pattern, sha256};

/// Turns each side takes.
const ROUNDS: usize = 6;
/// Idle time between turns: long enough for a pooled connection to sit idle.
const IDLE: Duration = Duration::from_millis(150);

#[test]
fn two_runtime_threads_alternate_without_hanging() {
    let Some(bucket) = bucket("clients-alternate") else {
        return;
    };
    let blobs = super::blobs(&bucket.options);
    let before = blobs.clients_built();
    let (to_b, from_a) = mpsc::channel::<usize>();
    let (to_a, from_b) = mpsc::channel::<usize>();
    let side = |name: &'static str,
                first: bool,
                send: mpsc::Sender<usize>,
                receive: mpsc::Receiver<usize>| {
        let blobs = blobs.clone();
        move || {
            super::block_on(async move {
                for round in 0..ROUNDS {
                    if !(first && round == 0) {
                        // Block this runtime's thread: its connections sit idle meanwhile.
                        receive.recv().expect("the other side's turn ended");
                    }
                    let body = pattern(1000 + round, round as u64 + if first { 0 } else { 100 });
                    let digest = sha256(&body);
                    blobs
                        .put_once(&digest, Bytes::from(body.clone()))
                        .await
                        .expect(name);
                    let read = blobs
                        .read(&digest, None)
                        .await
                        .expect(name)
                        .expect("present");
                    assert_eq!(read.into_bytes().await.expect(name), body);
                    tokio::time::sleep(IDLE).await;
                    let _ = send.send(round);
                }
            })
        }
    };
    std::thread::scope(|scope| {
        let a = scope.spawn(side("a", true, to_b, from_b));
        let b = scope.spawn(side("b", false, to_a, from_a));
        a.join().expect("side a");
        b.join().expect("side b");
    });
    assert_eq!(
        blobs.clients_built() - before,
        2,
        "one client per runtime thread"
    );

    // One thread, one runtime after another (a maintenance thread's block_on): each runtime
    // gets its own client, and requests after the first runtime is gone do not hang.
    let before = blobs.clients_built();
    for round in 0..3u64 {
        let body = pattern(500, 200 + round);
        let digest = sha256(&body);
        super::block_on(async {
            blobs
                .put_once(&digest, Bytes::from(body))
                .await
                .expect("PUT");
            assert_eq!(blobs.exists(&digest).await.expect("HEAD"), Some(500));
        });
    }
    assert_eq!(blobs.clients_built() - before, 3, "a client per runtime");
    // Several calls on one runtime share its client.
    let before = blobs.clients_built();
    super::block_on(async {
        for round in 0..5u64 {
            let digest = sha256(&pattern(500, 200 + round % 3));
            assert!(blobs.exists(&digest).await.expect("HEAD").is_some());
        }
    });
    assert_eq!(blobs.clients_built() - before, 1);
}

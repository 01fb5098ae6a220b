//! One blob on its way from upstream into the store, shared by every client that asks for it
//! meanwhile (single flight: one upstream request per repository and digest).
//!
//! Rules:
//! * A driver task on sync's runtime receives the upstream body and gives each chunk to the
//!   engine's `BlobImport`, which hashes it and writes it to the page cache on that thread,
//!   never on a shard. After each chunk it publishes how far the staged file is readable.
//! * Every client GET (the first or a later one) tails the staged file from its own offset:
//!   later clients stream from the download in progress instead of waiting for its end, and
//!   a slow client never slows the download or the others.
//! * The last byte is published only once the digest verified. A client of a download that
//!   fails gets an aborted connection, never a complete-looking blob. The commit (fsync,
//!   rename, index) follows; from then on the blob is served from the store.
//! * A download belongs to no client: one that goes away leaves it running, so the blob
//!   still lands in the store.
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use berth_storage::oci::{Digest, RepoName};
use berth_storage::BlobImport;
use bytes::Bytes;
use tokio::sync::watch;

use super::{OnDemand, SyncError};

/// Most bytes one read of the staged file hands to a client.
const READ_CHUNK: u64 = 1 << 20;
/// Readers are told of new bytes once this many more are written (and at the start and end).
const PUBLISH_STEP: u64 = 256 << 10;

/// How a download ended (or that it has not).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum End {
    Open,
    /// Every byte is readable; the commit is under way.
    Verified,
    Committed,
    /// No on-demand upstream has the blob.
    Missing,
    Failed(String),
}

impl End {
    /// Nothing more will happen to the download.
    fn settled(&self) -> bool {
        matches!(self, End::Committed | End::Missing | End::Failed(_))
    }
}

#[derive(Clone, Debug)]
pub(super) struct Progress {
    /// Upstream answered with the blob; `size` is the length it announced.
    started: bool,
    size: Option<u64>,
    /// Bytes of the staged file clients may read.
    visible: u64,
    end: End,
}

/// A download in progress: its published progress and its staged file.
pub(super) struct Download {
    progress: watch::Sender<Progress>,
    file: Arc<std::fs::File>,
}

impl Download {
    pub(super) fn new(file: Arc<std::fs::File>) -> Download {
        let (progress, _) = watch::channel(Progress {
            started: false,
            size: None,
            visible: 0,
            end: End::Open,
        });
        Download { progress, file }
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(change);
    }

    /// Waits until upstream answered or the download settled; returns the progress then.
    async fn started(&self) -> Progress {
        let mut receiver = self.progress.subscribe();
        let progress = receiver
            .wait_for(|progress| progress.started || progress.end.settled())
            .await;
        match progress {
            Ok(progress) => progress.clone(),
            Err(_) => Progress {
                started: false,
                size: None,
                visible: 0,
                end: End::Failed(STOPPED.into()),
            },
        }
    }

    /// Waits until the download settled; returns how it ended.
    pub(super) async fn settled(&self) -> End {
        let mut receiver = self.progress.subscribe();
        let end = match receiver.wait_for(|progress| progress.end.settled()).await {
            Ok(progress) => progress.end.clone(),
            Err(_) => End::Failed(STOPPED.into()),
        };
        end
    }
}

/// Why a download ended when its driver was dropped half-way (runtime shutdown).
const STOPPED: &str = "the blob download stopped";

/// What a client GET gets once the upstream answered: the stream, or why there is none.
pub(super) enum Opened {
    Stream(BlobStream),
    Missing,
    Failed(String),
}

/// Opens a reader of `download` at offset 0, once upstream answered.
pub(super) async fn open(download: Arc<Download>) -> Opened {
    let progress = download.started().await;
    match progress.end {
        End::Missing => return Opened::Missing,
        End::Failed(reason) => return Opened::Failed(reason),
        _ => {}
    }
    Opened::Stream(BlobStream {
        size: progress.size,
        progress: download.progress.subscribe(),
        download,
        offset: 0,
    })
}

/// A client's reader of a download: the blob's bytes as they become readable.
pub struct BlobStream {
    download: Arc<Download>,
    progress: watch::Receiver<Progress>,
    size: Option<u64>,
    offset: u64,
}

impl BlobStream {
    /// The size upstream announced.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The next bytes for the client; `Ok(None)` once every byte went out (the digest
    /// verified). An error (upstream failure, digest mismatch, storage) must abort the
    /// client's response.
    pub async fn next(&mut self) -> Result<Option<Bytes>, SyncError> {
        loop {
            let (visible, end) = {
                let progress = self.progress.borrow_and_update();
                (progress.visible, progress.end.clone())
            };
            if let End::Failed(reason) = end {
                return Err(SyncError::Download(reason));
            }
            if self.offset < visible {
                let want = (visible - self.offset).min(READ_CHUNK) as usize;
                let mut buffer = vec![0u8; want];
                let read = self.download.file.read_at(&mut buffer, self.offset)?;
                if read == 0 {
                    return Err(SyncError::Download(format!(
                        "staged file ends at {} before the {visible} bytes published",
                        self.offset
                    )));
                }
                buffer.truncate(read);
                self.offset += read as u64;
                return Ok(Some(Bytes::from(buffer)));
            }
            if matches!(end, End::Verified | End::Committed) {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                return Err(SyncError::Download(STOPPED.into()));
            }
        }
    }
}

/// Publishes how a download ended and takes it out of the flight table, also when its
/// driver is dropped half-way or never runs (a runtime shutting down drops its tasks).
pub(super) struct Settle {
    owner: Arc<OnDemand>,
    key: String,
    download: Arc<Download>,
    end: End,
}

impl Settle {
    /// For the download under `key` in `owner`'s table: a failure unless told otherwise.
    pub(super) fn new(owner: Arc<OnDemand>, key: String, download: Arc<Download>) -> Settle {
        Settle {
            owner,
            key,
            download,
            end: End::Failed(STOPPED.into()),
        }
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        // Out of the table first: a request that comes after a failure starts afresh
        // instead of joining it.
        {
            let mut table = self
                .owner
                .downloads
                .lock()
                .expect("download table lock is never poisoned");
            table.by_key.remove(&self.key);
            table.left += 1;
        }
        let end = std::mem::replace(&mut self.end, End::Open);
        self.download.update(|progress| progress.end = end);
    }
}

/// The driver of one download (on sync's runtime): runs it to its end, then `settle`
/// publishes how it ended and leaves the flight table (after the commit, so that a client
/// missing the entry finds the blob stored).
pub(super) async fn drive(mut settle: Settle, repo: RepoName, digest: Digest, import: BlobImport) {
    let owner = Arc::clone(&settle.owner);
    let download = Arc::clone(&settle.download);
    settle.end = match owner.transfer(&repo, &digest, &download, import).await {
        Ok(true) => End::Committed,
        Ok(false) => End::Missing,
        Err(error) => {
            tracing::warn!(component = "sync", repository = %repo, %digest, %error, "on-demand blob download failed; nothing stored");
            End::Failed(error.to_string())
        }
    };
}

impl OnDemand {
    /// Fetches, writes, verifies and commits. Ok(false): no upstream has the blob.
    async fn transfer(
        &self,
        repo: &RepoName,
        digest: &Digest,
        download: &Download,
        mut import: BlobImport,
    ) -> Result<bool, SyncError> {
        let Some((index, mut fetch)) = self.open_blob(repo, digest).await? else {
            return Ok(false);
        };
        let registry = &self.registries[index];
        download.update(|progress| {
            progress.started = true;
            progress.size = fetch.size;
        });
        let stored = async {
            let mut published = 0;
            while let Some(chunk) = fetch.chunks.recv().await {
                import.write(&chunk?)?;
                // The last byte waits for the digest check. Readers are woken for the first
                // bytes at once, then once per PUBLISH_STEP: one wake-up per small upstream
                // chunk costs more than the copy.
                let visible = import.written().saturating_sub(1);
                if published == 0 || visible - published >= PUBLISH_STEP {
                    download.update(|progress| progress.visible = visible);
                    published = visible;
                }
            }
            let verified = import.verify()?;
            let size = verified.size();
            download.update(|progress| {
                progress.visible = size;
                progress.end = End::Verified;
            });
            verified.commit(repo).await?;
            Ok::<u64, SyncError>(size)
        }
        .await;
        match stored {
            Ok(size) => {
                registry.succeeded(true);
                tracing::info!(component = "sync", repository = %repo, %digest, bytes = size, "blob synced on demand");
                Ok(true)
            }
            Err(error) => {
                registry.failed(&format!("blob {digest}: {error}"));
                Err(error)
            }
        }
    }
}

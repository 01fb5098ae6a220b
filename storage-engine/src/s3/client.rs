//! The options checked once, and one `AmazonS3` client per thread and runtime.
//!
//! Why per runtime and thread: a reqwest (hyper) connection pool hands a connection opened on
//! one current-thread runtime to a request on another; that connection's I/O is driven only by
//! the first runtime, so while it idles the request hangs (measured, SHARED.md findings). A
//! client is therefore kept in a thread-local slot per `S3Blobs` value, tagged with the id of
//! the runtime it was built on: a thread that runs a new runtime (a maintenance thread's
//! `block_on` builds one per call) gets a new client, and the old one (with its pool) is
//! dropped. Slots die with their thread, and slots of dropped `S3Blobs` values are pruned.
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, S3CopyIfNotExists};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, RetryConfig};

use super::{invalid, S3Options};
use crate::error::StorageError;

/// A bucket that does not accept a connection within this is down for this attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request from connect to the end of its body. Blob GETs stream to clients at the
/// clients' pace (a body error is resumed by a ranged GET while retries last), so this is
/// long: a 1 GiB body at 3.5 MB/s. PUTs carry at most one 8 MiB part or small blob.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Retries of a failed request (object_store's default: 10 within 3 minutes, which turns a
/// bucket that is down into requests that hang for minutes). With these a bucket that is
/// down answers a blob request with an error (500, logged with the S3 call and key) within
/// about `RETRY_TIMEOUT` plus one connect timeout.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Shared {
    pub(super) options: S3Options,
    /// The key prefix ([`ObjectPath::ROOT`] for none).
    pub(super) root: ObjectPath,
    /// `scheme://host:port` of a custom endpoint.
    endpoint: Option<String>,
    clients_built: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Blobs")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

struct Slot {
    owner: Weak<Shared>,
    runtime: Option<tokio::runtime::Id>,
    client: AmazonS3,
}

thread_local! {
    static SLOTS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    pub(super) fn new(options: S3Options) -> Result<Arc<Shared>, StorageError> {
        if options.bucket.is_empty() {
            return Err(invalid("S3 bucket name is empty".into()));
        }
        if options.access_key.is_some() != options.secret_key.is_some() {
            return Err(invalid(
                "S3 access key and secret key go together: give both or neither".into(),
            ));
        }
        let root_text = options.root_directory.trim_matches('/');
        let root = ObjectPath::parse(root_text).map_err(|error| {
            invalid(format!(
                "S3 root directory {:?}: {error}",
                options.root_directory
            ))
        })?;
        let endpoint = match options.endpoint.as_deref() {
            None => None,
            Some(endpoint) if endpoint.starts_with("https://") => Some(endpoint.to_owned()),
            Some(endpoint) if endpoint.starts_with("http://") => {
                if options.secure {
                    return Err(invalid(format!(
                        "S3 endpoint {endpoint} is http but `secure` asks for https"
                    )));
                }
                Some(endpoint.to_owned())
            }
            Some(endpoint) if endpoint.contains("://") => {
                return Err(invalid(format!(
                    "S3 endpoint {endpoint}: the scheme must be http or https"
                )))
            }
            Some(host) => {
                let scheme = if options.secure { "https" } else { "http" };
                Some(format!("{scheme}://{}", host.trim_end_matches('/')))
            }
        };
        let shared = Shared {
            options,
            root,
            endpoint,
            clients_built: AtomicU64::new(0),
        };
        // Builds (and drops) one client, so bad options fail here rather than at first use.
        shared.build()?;
        Ok(Arc::new(shared))
    }

    pub(super) fn clients_built(&self) -> u64 {
        self.clients_built.load(Ordering::Relaxed)
    }

    fn build(&self) -> Result<AmazonS3, StorageError> {
        let options = &self.options;
        let client_options = ClientOptions::new()
            .with_allow_http(!options.secure)
            .with_allow_invalid_certificates(options.skip_verify)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(&options.region)
            .with_client_options(client_options)
            // CopyObject onto an absent key only: SeaweedFS answers 412 and leaves the target
            // as it was (pinned by tests/s3); a server that ignores the header copies the
            // same bytes over the blob, which `install`'s HEAD first makes rare.
            .with_copy_if_not_exists(S3CopyIfNotExists::Header(
                "If-None-Match".into(),
                "*".into(),
            ))
            .with_retry(RetryConfig {
                backoff: Default::default(),
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            })
            .with_virtual_hosted_style_request(
                !options.force_path_style && self.endpoint.is_none(),
            );
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(access_key), Some(secret_key)) = (&options.access_key, &options.secret_key) {
            builder = builder
                .with_access_key_id(access_key)
                .with_secret_access_key(secret_key);
        } else if let (Ok(access_key), Ok(secret_key)) = (
            std::env::var("AWS_ACCESS_KEY_ID"),
            std::env::var("AWS_SECRET_ACCESS_KEY"),
        ) {
            // No keys in the config: the environment's, as zot and the AWS SDKs read them
            // (without either, object_store asks the instance metadata service).
            builder = builder
                .with_access_key_id(access_key)
                .with_secret_access_key(secret_key);
            if let Ok(token) = std::env::var("AWS_SESSION_TOKEN") {
                builder = builder.with_token(token);
            }
        }
        let client = builder
            .build()
            .map_err(|error| invalid(format!("S3 client: {error}")))?;
        self.clients_built.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    /// This thread's client for the current runtime (built on first use).
    pub(super) fn client(self: &Arc<Self>) -> Result<AmazonS3, StorageError> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| handle.id());
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            slots.retain(|slot| slot.owner.strong_count() > 0);
            let mine = slots
                .iter_mut()
                .find(|slot| std::ptr::eq(slot.owner.as_ptr(), Arc::as_ptr(self)));
            match mine {
                Some(slot) if slot.runtime == runtime => Ok(slot.client.clone()),
                Some(slot) => {
                    slot.client = self.build()?;
                    slot.runtime = runtime;
                    Ok(slot.client.clone())
                }
                None => {
                    let client = self.build()?;
                    slots.push(Slot {
                        owner: Arc::downgrade(self),
                        runtime,
                        client: client.clone(),
                    });
                    Ok(client)
                }
            }
        })
    }
}

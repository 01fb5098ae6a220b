//! The request engine of the upstream client: one logical request tried on each URL, with
//! authentication (anonymous, Basic, bearer tokens), retries with backoff, the concurrency and
//! rate limits, and bounded body reads.
//!
//! Rules: a request holds its concurrency permit and in-flight mark until its body is read or
//! dropped; credentials go only to the host[:port] they are configured for; a 401 is answered
//! once (with a fresh token or the host's Basic login), never looped on.
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{self, Challenge, Scheme, Token, TokenKey};
use super::upstream::{Authorization, Call, Inner, Sent, UpstreamError};
use super::upstream_http::{
    content_length, header_str, host_key, link_local_refusal, request_error, sensitive, too_large,
};

impl Inner {
    /// [`Inner::execute`], with 404 as None and any other non-2xx as an error.
    pub(super) async fn execute_found(&self, call: &Call) -> Result<Option<Sent>, UpstreamError> {
        let sent = self.execute(call).await?;
        match sent.response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => Ok(Some(sent)),
            status => Err(UpstreamError::Status {
                url: sent.url.to_string(),
                status: status.as_u16(),
            }),
        }
    }

    /// Sends `call` to each URL in order until one answers (transient failures retried).
    pub(super) async fn execute(&self, call: &Call) -> Result<Sent, UpstreamError> {
        let mut last_error = None;
        for base in &self.bases {
            let url = base.join(&call.path).map_err(|error| {
                UpstreamError::Protocol(format!("{base}: path {:?}: {error}", call.path))
            })?;
            match self.execute_at(url, call).await {
                Ok(sent) => return Ok(sent),
                Err(error) if error.is_transient() => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.expect("urls is non-empty (checked in Upstream::new)"))
    }

    pub(super) async fn execute_at(&self, url: Url, call: &Call) -> Result<Sent, UpstreamError> {
        let mut retries = 0;
        let mut auth_retried = false;
        let mut scope = call.scope.clone();
        loop {
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore never closed");
            if let Some(limiter) = &self.limiter {
                limiter.acquire().await;
            }
            let authorization = self.authorization(&url, &scope).await?;
            let in_flight = self.stats.in_flight();
            let mut request = self.client.request(call.method.clone(), url.clone());
            if let Some(accept) = call.accept {
                request = request.header(ACCEPT, accept);
            }
            request = match &authorization {
                Authorization::Anonymous => request,
                Authorization::Basic(login) => {
                    request.basic_auth(&login.username, Some(&login.password))
                }
                Authorization::Bearer(token, _) => {
                    request.header(AUTHORIZATION, sensitive(&token.header()))
                }
            };
            let started = Instant::now();
            let (error, retry_after) =
                match tokio::time::timeout(self.header_timeout, request.send()).await {
                    Err(_) => {
                        self.stats.record_failure();
                        let url = url.to_string();
                        (
                            UpstreamError::Timeout {
                                url,
                                timeout: self.header_timeout,
                            },
                            None,
                        )
                    }
                    Ok(Err(error)) => {
                        self.stats.record_failure();
                        (request_error(&url, &error), None)
                    }
                    Ok(Ok(response)) => {
                        let status = response.status();
                        self.stats.record_status(status.as_u16(), started.elapsed());
                        if status == StatusCode::UNAUTHORIZED && !auth_retried {
                            auth_retried = true;
                            if let Authorization::Bearer(_, key) = &authorization {
                                self.auth.drop_token(key);
                            }
                            let challenge =
                                header_str(response.headers(), WWW_AUTHENTICATE.as_str())
                                    .and_then(auth::parse_challenge);
                            match challenge {
                                Some(Challenge::Basic)
                                    if self.credentials.for_url(&url).is_some() =>
                                {
                                    self.auth.set_scheme(&host_key(&url), Scheme::Basic);
                                    continue;
                                }
                                Some(Challenge::Bearer {
                                    realm,
                                    service,
                                    scope: asked,
                                }) => {
                                    if let Some(asked) = asked {
                                        scope = asked;
                                    }
                                    self.auth.set_scheme(
                                        &host_key(&url),
                                        Scheme::Bearer { realm, service },
                                    );
                                    continue;
                                }
                                _ => {}
                            }
                        }
                        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                            return Err(UpstreamError::Unauthorized {
                                url: url.to_string(),
                                status: status.as_u16(),
                            });
                        }
                        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                            if status == StatusCode::TOO_MANY_REQUESTS {
                                self.stats.record_throttled();
                            }
                            let retry_after = header_str(response.headers(), "retry-after")
                                .and_then(|value| value.trim().parse::<u64>().ok())
                                .map(Duration::from_secs);
                            (
                                UpstreamError::Status {
                                    url: url.to_string(),
                                    status: status.as_u16(),
                                },
                                retry_after,
                            )
                        } else {
                            return Ok(Sent {
                                response,
                                url,
                                _permit: Some(permit),
                                _in_flight: in_flight,
                            });
                        }
                    }
                };
            drop((permit, in_flight));
            if !error.is_transient() || retries >= self.max_retries {
                return Err(error);
            }
            let backoff = self
                .retry_delay
                .saturating_mul(2u32.saturating_pow(retries))
                .min(self.max_retry_delay);
            let delay = retry_after.map_or(backoff, |asked| asked.min(self.max_retry_delay));
            retries += 1;
            self.stats.record_retry();
            tracing::debug!(%url, %error, ?delay, retry = retries, "retrying upstream request");
            tokio::time::sleep(delay).await;
        }
    }

    /// What to send to `url`: nothing until the host asked for auth, then Basic with the
    /// credentials of that exact host, or a bearer token for `scope`.
    pub(super) async fn authorization(
        &self,
        url: &Url,
        scope: &str,
    ) -> Result<Authorization, UpstreamError> {
        match self.auth.scheme(&host_key(url)) {
            None => Ok(Authorization::Anonymous),
            Some(Scheme::Basic) => Ok(self
                .credentials
                .for_url(url)
                .map_or(Authorization::Anonymous, |login| {
                    Authorization::Basic(login.clone())
                })),
            Some(Scheme::Bearer { realm, service }) => {
                let key = TokenKey {
                    realm,
                    service,
                    scope: scope.to_owned(),
                };
                let token = match self.auth.token(&key) {
                    Some(token) => token,
                    None => self.fetch_token(&key).await?,
                };
                Ok(Authorization::Bearer(token, key))
            }
        }
    }

    /// GET realm?service=..&scope=.., with Basic credentials only when the realm's own
    /// host[:port] has an entry (never the registry's credentials on another host).
    pub(super) async fn fetch_token(&self, key: &TokenKey) -> Result<Token, UpstreamError> {
        let invalid =
            |message: String| UpstreamError::Protocol(format!("{}: {message}", key.realm));
        let realm =
            Url::parse(&key.realm).map_err(|error| invalid(format!("token realm: {error}")))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(invalid("token realm is not an http(s) URL".to_owned()));
        }
        if let Some(reason) = link_local_refusal(&realm) {
            return Err(UpstreamError::Refused(format!("token realm {reason}")));
        }
        let url = auth::token_url(&realm, key.service.as_deref(), &key.scope);
        let mut request = self.client.get(url.clone());
        if let Some(login) = self.credentials.for_url(&realm) {
            request = request.basic_auth(&login.username, Some(&login.password));
        }
        let started = Instant::now();
        let in_flight = self.stats.in_flight();
        let response = match tokio::time::timeout(self.header_timeout, request.send()).await {
            Err(_) => {
                self.stats.record_failure();
                return Err(UpstreamError::Timeout {
                    url: url.to_string(),
                    timeout: self.header_timeout,
                });
            }
            Ok(Err(error)) => {
                self.stats.record_failure();
                return Err(request_error(&url, &error));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        self.stats.record_status(status.as_u16(), started.elapsed());
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Err(UpstreamError::Unauthorized {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        // The calling request holds this upstream's permit already; taking a second one
        // here could deadlock at reqConcurrent 1.
        let mut sent = Sent {
            response,
            url,
            _permit: None,
            _in_flight: in_flight,
        };
        let body = self
            .read_limited(
                &mut sent,
                auth::MAX_TOKEN_RESPONSE_BYTES as u64,
                "token response",
            )
            .await?;
        let (token, lifetime) = auth::parse_token_response(&body).map_err(invalid)?;
        self.auth.store_token(key.clone(), token.clone(), lifetime);
        Ok(token)
    }

    /// Reads a whole body of at most `limit` bytes.
    pub(super) async fn read_limited(
        &self,
        sent: &mut Sent,
        limit: u64,
        what: &'static str,
    ) -> Result<Bytes, UpstreamError> {
        if content_length(sent.response.headers()).is_some_and(|length| length > limit) {
            return Err(too_large(what, limit));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = self.next_chunk(sent).await? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large(what, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The next body chunk, or an error when the body fails or stalls.
    pub(super) async fn next_chunk(&self, sent: &mut Sent) -> Result<Option<Bytes>, UpstreamError> {
        match tokio::time::timeout(self.body_stall_timeout, sent.response.chunk()).await {
            Err(_) => Err(UpstreamError::Stalled {
                url: sent.url.to_string(),
                timeout: self.body_stall_timeout,
            }),
            Ok(Err(error)) => Err(request_error(&sent.url, &error)),
            Ok(Ok(chunk)) => {
                if let Some(chunk) = &chunk {
                    self.stats.record_bytes(chunk.len() as u64);
                }
                Ok(chunk)
            }
        }
    }
}

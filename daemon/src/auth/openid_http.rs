//! How the relying party (auth/openid.rs) talks to a provider: one HTTP client per login
//! (rustls; no redirects followed; every call bounded by [`CALL_TIMEOUT`]), answers read up to
//! [`MAX_RESPONSE_BYTES`], the provider's error text made printable, and the client's
//! credentials file. No secret, code or token reaches an error message.

use serde_json::Value;

use super::{LoginError, CALL_TIMEOUT, MAX_RESPONSE_BYTES};

pub(super) fn describe_error(error: &str, json: &Value) -> String {
    let printable = |text: &str| {
        text.chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect::<String>()
    };
    match json["error_description"].as_str() {
        Some(description) => format!("{} ({})", printable(error), printable(description)),
        None => printable(error),
    }
}

pub(super) fn http_client() -> Result<reqwest::Client, LoginError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout(CALL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| LoginError::Unavailable(format!("HTTP client: {error}")))
}

/// Sends, reads the body (bounded): `(status, body)`.
pub(super) async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), LoginError> {
    let unavailable = |error: reqwest::Error| {
        // The URL only: never a query or a body.
        LoginError::Unavailable(error.without_url().to_string())
    };
    let mut answer = request.send().await.map_err(unavailable)?;
    let status = answer.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(LoginError::Unavailable("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// GETs a JSON document (with `bearer` as the access token unless empty).
pub(super) async fn get_json(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
) -> Result<Value, LoginError> {
    let mut request = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if !bearer.is_empty() {
        request = request.bearer_auth(bearer);
    }
    let (status, body) = send(request).await?;
    if !(200..300).contains(&status) {
        return Err(LoginError::Unavailable(format!("{url} answered {status}")));
    }
    serde_json::from_slice(&body)
        .map_err(|_| LoginError::Unavailable(format!("{url} did not answer JSON")))
}

/// `{"clientid": ..., "clientsecret": ...}` (keys in any case).
pub(super) fn read_credentials(path: &std::path::Path) -> Result<(String, Option<String>), String> {
    let describe = |why: String| format!("credentialsFile {}: {why}", path.display());
    let text = std::fs::read_to_string(path).map_err(|error| describe(error.to_string()))?;
    let json: Value =
        serde_json::from_str(&text).map_err(|_| describe("not a JSON object".into()))?;
    let field = |name: &str| {
        json.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .and_then(|(_, value)| value.as_str())
                .map(str::to_owned)
        })
    };
    let id = field("clientid").ok_or_else(|| describe("no clientid".into()))?;
    Ok((id, field("clientsecret")))
}

//! How the UI writes what search answers: sizes, times, digests, links and the cards and rows
//! the templates lay out. Plain strings and flags only: the templates hold no logic beyond
//! loops and conditions, and askama escapes every value they print.
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::data::{ImageSummary, Platform, RepoSummary};

/// `/image/<repo>` with the name percent-encoded as one path segment (zui's links).
pub fn repo_href(repo: &str) -> String {
    format!("/image/{}", segment(repo))
}

/// `/image/<repo>/tag/<tag>`.
pub fn tag_href(repo: &str, tag: &str) -> String {
    format!("{}/tag/{}", repo_href(repo), segment(tag))
}

/// `text` percent-encoded for one path segment or query value.
pub fn segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// Everything but unreserved characters is encoded.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Bytes as people read them (`12.3 MB`, powers of 1000 as registries' UIs show).
pub fn size(bytes: Option<&str>) -> String {
    let Some(bytes) = bytes.and_then(|text| text.parse::<u64>().ok()) else {
        return "—".to_owned();
    };
    bytes_text(bytes)
}

pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time as `<time>` wants it: the RFC 3339 text and "3 hours ago" (against `now`).
#[derive(Clone, Debug, Default)]
pub struct When {
    pub iso: String,
    pub ago: String,
}

impl When {
    pub fn of(text: Option<&str>, now: OffsetDateTime) -> When {
        let Some(parsed) = text.and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok()) else {
            return When {
                iso: String::new(),
                ago: "—".to_owned(),
            };
        };
        if parsed.unix_timestamp() <= 0 {
            return When {
                iso: String::new(),
                ago: "—".to_owned(),
            };
        }
        let seconds = (now - parsed).whole_seconds().max(0);
        let ago = match seconds {
            0..60 => "just now".to_owned(),
            60..3600 => plural(seconds / 60, "minute"),
            3600..86_400 => plural(seconds / 3600, "hour"),
            86_400..2_592_000 => plural(seconds / 86_400, "day"),
            2_592_000..31_536_000 => plural(seconds / 2_592_000, "month"),
            _ => plural(seconds / 31_536_000, "year"),
        };
        When {
            iso: text.unwrap_or_default().to_owned(),
            ago,
        }
    }
}

impl When {
    /// A time given in milliseconds since the Unix epoch (`None`: never).
    pub fn at_unix_ms(milliseconds: Option<u64>, now: OffsetDateTime) -> When {
        let at = milliseconds
            .and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .and_then(|at| at.format(&Rfc3339).ok());
        When::of(at.as_deref(), now)
    }
}

fn plural(count: i64, unit: &str) -> String {
    match count {
        1 => format!("1 {unit} ago"),
        _ => format!("{count} {unit}s ago"),
    }
}

/// `sha256:0123456789ab` (12 hex digits), for tables; the whole digest goes in a title.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_owned(),
    }
}

/// Distinct `os/arch` labels, in first-seen order.
pub fn platform_labels<'a>(platforms: impl IntoIterator<Item = &'a Platform>) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for platform in platforms {
        let label = platform.label();
        if label != "?/?" && !labels.contains(&label) {
            labels.push(label);
        }
    }
    labels
}

/// A repository in a list (home, explore).
#[derive(Debug, Default)]
pub struct RepoCard {
    pub name: String,
    pub href: String,
    pub description: String,
    pub updated: When,
    pub size: String,
    pub platforms: Vec<String>,
    pub downloads: u64,
    pub stars: u64,
    pub starred: bool,
    pub bookmarked: bool,
    pub signed: bool,
    pub tag: String,
}

impl RepoCard {
    pub fn of(repo: &RepoSummary, now: OffsetDateTime) -> RepoCard {
        let newest = repo.newest_image.as_ref();
        RepoCard {
            name: repo.name.clone(),
            href: repo_href(&repo.name),
            description: newest
                .and_then(|image| image.description.clone())
                .unwrap_or_default(),
            updated: When::of(repo.last_updated.as_deref(), now),
            size: size(repo.size.as_deref()),
            platforms: platform_labels(&repo.platforms),
            downloads: repo.download_count.unwrap_or(0),
            stars: repo.star_count.unwrap_or(0),
            starred: repo.is_starred.unwrap_or(false),
            bookmarked: repo.is_bookmarked.unwrap_or(false),
            signed: newest.and_then(|image| image.is_signed).unwrap_or(false),
            tag: newest
                .and_then(|image| image.tag.clone())
                .unwrap_or_default(),
        }
    }

    pub fn all(repos: &[RepoSummary], now: OffsetDateTime) -> Vec<RepoCard> {
        repos.iter().map(|repo| RepoCard::of(repo, now)).collect()
    }
}

/// An image in a list (explore's tag hits, a repository's tags).
#[derive(Debug, Default)]
pub struct ImageRow {
    pub repo: String,
    pub tag: String,
    pub href: String,
    pub digest: String,
    pub digest_short: String,
    pub platforms: Vec<String>,
    pub size: String,
    pub pushed: When,
    pub signed: bool,
    /// A signature of it is trusted (verified with an uploaded key or certificate).
    pub trusted: bool,
    pub deletable: bool,
    pub delete_href: String,
}

impl ImageRow {
    pub fn of(image: &ImageSummary, repo: &str, now: OffsetDateTime) -> ImageRow {
        let repo = image.repo_name.as_deref().unwrap_or(repo);
        let tag = image.tag.clone().unwrap_or_default();
        let digest = image.digest.clone().unwrap_or_default();
        let href = tag_href(repo, &tag);
        ImageRow {
            repo: repo.to_owned(),
            digest_short: short_digest(&digest),
            platforms: platform_labels(
                image
                    .manifests
                    .iter()
                    .filter_map(|manifest| manifest.platform.as_ref()),
            ),
            size: size(image.size.as_deref()),
            pushed: When::of(
                image
                    .push_timestamp
                    .as_deref()
                    .or(image.last_updated.as_deref()),
                now,
            ),
            signed: image.is_signed.unwrap_or(false),
            trusted: image
                .signature_info
                .iter()
                .any(|signature| signature.is_trusted == Some(true)),
            deletable: image.is_deletable.unwrap_or(false),
            delete_href: format!("{href}/delete"),
            href,
            tag,
            digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_times_and_links_read_as_people_expect() {
        assert_eq!(size(Some("999")), "999 B");
        assert_eq!(size(Some("1500")), "1.5 kB");
        assert_eq!(size(Some("12345678")), "12.3 MB");
        assert_eq!(size(None), "—");
        let now = OffsetDateTime::parse("2026-12-06T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(
            When::of(Some("2026-12-06T11:00:00Z"), now).ago,
            "1 hour ago"
        );
        assert_eq!(
            When::of(Some("2026-12-03T12:00:00Z"), now).ago,
            "3 days ago"
        );
        assert_eq!(When::of(Some("1970-01-01T00:00:00Z"), now).ago, "—");
        assert_eq!(repo_href("library/nginx"), "/image/library%2Fnginx");
        assert_eq!(tag_href("a/b", "v1.0_x-y"), "/image/a%2Fb/tag/v1.0_x-y");
        assert_eq!(
            short_digest(&format!("sha256:{}", "a".repeat(64))),
            "sha256:aaaaaaaaaaaa"
        );
    }
}

//! What the UI shows, asked of search: every page's data comes from GraphQL documents run in
//! process through the same [`Search`] that answers `/v2/_zot/ext/search`, as the viewer, so
//! the UI and the API never disagree (and never show what the viewer may not read).
//!
//! Rules: the documents are fixed texts (search keeps each parsed once) with variables; an
//! answer that carries errors and no data is a failure of the page, logged with the errors.
use std::sync::Arc;

use berth_storage::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::ext::search::{GraphqlRequest, Permits, Search};

/// Fields of a repository in lists.
const REPO_FIELDS: &str = "Name LastUpdated Size Platforms { Os Arch } Vendors DownloadCount \
    StarCount IsStarred IsBookmarked NewestImage { Tag Description IsSigned Licenses }";

pub fn home_document(user: bool) -> String {
    let mine = match user {
        true => format!(
            "starred: StarredRepos(requestedPage: {{limit: $limit, offset: 0, sortBy: ALPHABETIC_ASC}}) \
             {{ Page {{ TotalCount }} Results {{ {REPO_FIELDS} }} }} \
             bookmarked: BookmarkedRepos(requestedPage: {{limit: $limit, offset: 0, sortBy: ALPHABETIC_ASC}}) \
             {{ Page {{ TotalCount }} Results {{ {REPO_FIELDS} }} }}"
        ),
        false => String::new(),
    };
    format!(
        "query Home($limit: Int) {{ \
         recent: RepoListWithNewestImage(requestedPage: {{limit: $limit, offset: 0, sortBy: UPDATE_TIME}}) \
         {{ Page {{ TotalCount }} Results {{ {REPO_FIELDS} }} }} \
         popular: RepoListWithNewestImage(requestedPage: {{limit: $limit, offset: 0, sortBy: DOWNLOADS}}) \
         {{ Page {{ TotalCount }} Results {{ {REPO_FIELDS} }} }} {mine} }}"
    )
}

pub fn explore_document() -> String {
    format!(
        "query Explore($query: String!, $filter: Filter, $limit: Int, $offset: Int, $sort: SortCriteria) {{ \
         GlobalSearch(query: $query, filter: $filter, requestedPage: {{limit: $limit, offset: $offset, sortBy: $sort}}) \
         {{ Page {{ TotalCount ItemCount }} Repos {{ {REPO_FIELDS} }} \
         Images {{ RepoName Tag Digest Size LastUpdated IsSigned Manifests {{ Platform {{ Os Arch }} }} }} }} }}"
    )
}

pub fn repo_document() -> String {
    format!(
        "query Repo($repo: String!) {{ ExpandedRepoInfo(repo: $repo) {{ \
         Summary {{ {REPO_FIELDS} }} \
         Images {{ Tag Digest MediaType Size PushTimestamp LastUpdated IsSigned \
         SignatureInfo {{ IsTrusted }} IsDeletable \
         Description Vendor Licenses Manifests {{ Digest Size Platform {{ Os Arch }} }} }} }} }}"
    )
}

pub const SIGNATURE_FIELDS: &str = "IsSigned SignatureInfo { Tool IsTrusted Author }";
pub const REFERRER_FIELDS: &str =
    "Referrers { MediaType ArtifactType Size Digest Annotations { Key Value } }";

pub fn image_document() -> String {
    format!(
        "query Image($image: String!) {{ Image(image: $image) {{ \
         RepoName Tag Digest MediaType Size PushTimestamp LastUpdated DownloadCount Description \
         Licenses Vendor Title Source Documentation Authors IsDeletable {SIGNATURE_FIELDS} \
         {REFERRER_FIELDS} \
         Manifests {{ Digest ConfigDigest Size LastUpdated ArtifactType Platform {{ Os Arch }} \
         {SIGNATURE_FIELDS} {REFERRER_FIELDS} Layers {{ Size Digest }} \
         History {{ Layer {{ Size Digest }} HistoryDescription {{ Created CreatedBy Comment EmptyLayer }} }} }} }} }}"
    )
}

pub const RELATED_DOCUMENT: &str = "query Related($image: String!, $digest: String, $limit: Int) { \
    base: BaseImageList(image: $image, digest: $digest, requestedPage: {limit: $limit, offset: 0}) \
    { Page { TotalCount } Results { RepoName Tag Digest } } \
    derived: DerivedImageList(image: $image, digest: $digest, requestedPage: {limit: $limit, offset: 0}) \
    { Page { TotalCount } Results { RepoName Tag Digest } } }";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PageInfo {
    pub total_count: u64,
    pub item_count: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Platform {
    pub os: Option<String>,
    pub arch: Option<String>,
}

impl Platform {
    /// `os/arch`, `?` for what is unknown.
    pub fn label(&self) -> String {
        format!(
            "{}/{}",
            self.os
                .as_deref()
                .filter(|os| !os.is_empty())
                .unwrap_or("?"),
            self.arch
                .as_deref()
                .filter(|arch| !arch.is_empty())
                .unwrap_or("?")
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RepoSummary {
    pub name: String,
    pub last_updated: Option<String>,
    pub size: Option<String>,
    pub platforms: Vec<Platform>,
    pub vendors: Vec<Option<String>>,
    pub download_count: Option<u64>,
    pub star_count: Option<u64>,
    pub is_starred: Option<bool>,
    pub is_bookmarked: Option<bool>,
    pub newest_image: Option<ImageSummary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Repos {
    pub page: PageInfo,
    pub results: Vec<RepoSummary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Signature {
    pub tool: Option<String>,
    pub is_trusted: Option<bool>,
    pub author: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Annotation {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Referrer {
    pub media_type: Option<String>,
    pub artifact_type: Option<String>,
    pub size: Option<u64>,
    pub digest: String,
    pub annotations: Vec<Annotation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Layer {
    pub size: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HistoryDescription {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct History {
    pub layer: Option<Layer>,
    pub history_description: Option<HistoryDescription>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ManifestSummary {
    pub digest: String,
    pub config_digest: Option<String>,
    pub size: Option<String>,
    pub last_updated: Option<String>,
    pub artifact_type: Option<String>,
    pub platform: Option<Platform>,
    pub is_signed: Option<bool>,
    pub signature_info: Vec<Signature>,
    pub referrers: Vec<Referrer>,
    pub layers: Vec<Layer>,
    pub history: Vec<History>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageSummary {
    pub repo_name: Option<String>,
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<String>,
    pub push_timestamp: Option<String>,
    pub last_updated: Option<String>,
    pub download_count: Option<u64>,
    pub description: Option<String>,
    pub licenses: Option<String>,
    pub vendor: Option<String>,
    pub title: Option<String>,
    pub source: Option<String>,
    pub documentation: Option<String>,
    pub authors: Option<String>,
    pub is_signed: Option<bool>,
    pub is_deletable: Option<bool>,
    pub signature_info: Vec<Signature>,
    pub referrers: Vec<Referrer>,
    pub manifests: Vec<ManifestSummary>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Home {
    pub recent: Repos,
    pub popular: Repos,
    #[serde(default)]
    pub starred: Option<Repos>,
    #[serde(default)]
    pub bookmarked: Option<Repos>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SearchResult {
    pub page: PageInfo,
    #[serde(deserialize_with = "null_is_empty")]
    pub repos: Vec<RepoSummary>,
    #[serde(deserialize_with = "null_is_empty")]
    pub images: Vec<ImageSummary>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Explore {
    pub global_search: SearchResult,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RepoInfo {
    pub summary: Option<RepoSummary>,
    /// `null` for a repository the viewer may not read (zot answers `{Summary: null, Images:
    /// null}` with no error).
    #[serde(deserialize_with = "null_is_empty")]
    pub images: Vec<ImageSummary>,
}

/// A list that search may answer as `null`: empty.
fn null_is_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Repo {
    pub expanded_repo_info: RepoInfo,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    pub image: ImageSummary,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRef {
    pub repo_name: String,
    pub tag: String,
    pub digest: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageRefs {
    pub page: PageInfo,
    pub results: Vec<ImageRef>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Related {
    pub base: ImageRefs,
    pub derived: ImageRefs,
}

/// Why a page's data could not be had.
#[derive(Debug)]
pub enum Failure {
    /// The answer's errors (the resource does not exist, or the viewer may not read it).
    Refused(Vec<String>),
    /// Search failed (logged).
    Internal,
}

/// Runs `document` with `variables` as the viewer and decodes its `data` into `T`.
pub async fn ask<T: DeserializeOwned>(
    search: &Search,
    engine: &Arc<Engine>,
    viewer: (Option<String>, Permits),
    document: String,
    variables: Value,
) -> Result<T, Failure> {
    let (user, permits) = viewer;
    let request = GraphqlRequest {
        query: document,
        variables: Some(variables),
        operation_name: None,
    };
    let answer = search.execute(request, engine.clone(), user, permits).await;
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        data: Value,
        #[serde(default)]
        errors: Vec<Value>,
    }
    let envelope = match serde_json::from_slice::<Envelope>(&answer.body) {
        Ok(envelope) if answer.status == 200 => envelope,
        _ => {
            tracing::error!(
                component = "ui",
                status = answer.status,
                body = %String::from_utf8_lossy(&answer.body),
                "search answered the UI with a failure"
            );
            return Err(Failure::Internal);
        }
    };
    let messages = || {
        envelope
            .errors
            .iter()
            .map(|error| error["message"].as_str().unwrap_or("error").to_owned())
            .collect::<Vec<_>>()
    };
    if envelope.data.is_null() {
        return Err(Failure::Refused(messages()));
    }
    match serde_json::from_value::<T>(envelope.data.clone()) {
        Ok(data) => Ok(data),
        Err(_) if !envelope.errors.is_empty() => Err(Failure::Refused(messages())),
        Err(error) => {
            tracing::error!(component = "ui", %error, "the UI cannot read a search answer");
            Err(Failure::Internal)
        }
    }
}

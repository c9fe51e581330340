//! Object stores, and the one place where an ASL `Bucket` becomes a store.
//!
//! A [`StoreConfig`] (from TOML or a URL) names one backend for all buckets:
//!
//! * **local files** — the embedded default. Bucket `B`, key `K` ↔ file `<data-dir>/B/K`
//!   (the `--data-dir` contract of `stepmap run`). A bucket's directory is created on first use.
//! * **S3** — AWS or any S3-compatible endpoint; path-style requests unless
//!   `virtual_hosted_style`; credentials from the config, else the standard `AWS_*` variables.
//! * **memory** — for tests; each bucket is an independent in-memory store.
//!
//! [`Stores::bucket`] is the mapping: it hands out a [`BucketStore`] (cached per bucket), which
//! carries the `object_store` handle and knows the store's listing order, so that listings are
//! always in S3's ascending key order whatever the backend.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};
use crate::file_range::{read_file, FileRange};
use crate::staged_cache::StagedCache;

/// An object: `s3://bucket/key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectRef { bucket: bucket.into(), key: key.into() }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Settings for an S3 or S3-compatible endpoint. Unset fields fall back to the standard AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// `https://bucket.host/key` instead of `https://host/bucket/key`.
    pub virtual_hosted_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints (default: allowed when the endpoint URL is `http://`).
    pub allow_http: Option<bool>,
    /// Send unsigned requests (public buckets, test servers without authentication).
    pub skip_signature: bool,
}

/// Which backend serves the buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// Bucket `B`, key `K` ↔ `<data_dir>/B/K`.
    Local {
        data_dir: PathBuf,
    },
    S3(S3Config),
    Memory,
}

impl StoreConfig {
    /// Parses a store URL:
    ///
    /// * `file:///abs/dir`, `/abs/dir` or `./rel/dir` — local files under that data directory;
    /// * `memory://` — in-memory stores;
    /// * `s3://` — AWS S3 (region and credentials from the query or the environment);
    /// * `http://host:port` / `https://host` — an S3-compatible endpoint, path-style.
    ///
    /// Query parameters for the S3 forms: `region`, `virtual_hosted_style`, `access_key_id`,
    /// `secret_access_key`, `session_token`, `allow_http`, `skip_signature`.
    pub fn from_url(text: &str) -> Result<StoreConfig> {
        let config_error = |message: String| StorageError::Config { message };
        if !text.contains("://") && !text.starts_with("memory:") {
            return Ok(StoreConfig::Local { data_dir: PathBuf::from(text) });
        }
        let url = url::Url::parse(text).map_err(|e| config_error(format!("{text:?} is not a URL: {e}")))?;
        match url.scheme() {
            "memory" => Ok(StoreConfig::Memory),
            "file" => {
                let data_dir =
                    url.to_file_path().map_err(|()| config_error(format!("{text:?} is not a local directory URL")))?;
                Ok(StoreConfig::Local { data_dir })
            }
            scheme @ ("s3" | "http" | "https") => {
                let mut config = S3Config::default();
                if scheme != "s3" {
                    let mut endpoint = url.clone();
                    endpoint.set_query(None);
                    config.endpoint = Some(endpoint.as_str().trim_end_matches('/').to_string());
                } else if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(config_error(format!(
                        "{text:?}: an s3:// store URL names no bucket (buckets come from the ItemReader)"
                    )));
                }
                for (name, value) in url.query_pairs() {
                    let flag = || match value.as_ref() {
                        "true" | "1" => Ok(true),
                        "false" | "0" => Ok(false),
                        other => Err(config_error(format!("{name}={other:?} is not true or false"))),
                    };
                    match name.as_ref() {
                        "region" => config.region = Some(value.to_string()),
                        "endpoint" => config.endpoint = Some(value.to_string()),
                        "virtual_hosted_style" => config.virtual_hosted_style = flag()?,
                        "access_key_id" => config.access_key_id = Some(value.to_string()),
                        "secret_access_key" => config.secret_access_key = Some(value.to_string()),
                        "session_token" => config.session_token = Some(value.to_string()),
                        "allow_http" => config.allow_http = Some(flag()?),
                        "skip_signature" => config.skip_signature = flag()?,
                        other => return Err(config_error(format!("unknown store URL parameter {other:?}"))),
                    }
                }
                Ok(StoreConfig::S3(config))
            }
            other => Err(config_error(format!("unsupported store URL scheme {other:?}"))),
        }
    }
}

/// How a backend orders `list` results; S3 lists in ascending UTF-8 key order, which ItemReader
/// listings and batch plans rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListingOrder {
    /// `list` already yields ascending keys (S3, memory).
    Sorted,
    /// Directory walk order (local files): sorted per directory by [`BucketStore::list_sorted`].
    Unsorted,
}

/// One bucket's store.
#[derive(Clone, Debug)]
pub struct BucketStore {
    name: String,
    store: Arc<dyn ObjectStore>,
    order: ListingOrder,
}

/// A readable byte stream of (part of) an object.
pub(crate) type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Where the bytes of an opened object come from.
pub(crate) enum ByteSource {
    /// A local file, which a reader can read straight into its own buffer
    /// ([`FileRange::read_into`]) instead of receiving chunks to copy.
    File(FileRange),
    /// Chunks as the store sends them (S3, memory).
    Stream(ByteStream),
}

impl ByteSource {
    /// The next chunk, `None` at the end.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        match self {
            ByteSource::File(file) => {
                let mut chunk = Vec::new();
                match file.read_into(&mut chunk).await {
                    Ok(0) => None,
                    Ok(_) => Some(Ok(Bytes::from(chunk))),
                    Err(e) => Some(Err(e)),
                }
            }
            ByteSource::Stream(stream) => stream.next().await,
        }
    }
}

/// What a read expects of the object, so that a batch re-read gives the planned bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadCondition {
    pub if_match: Option<String>,
    pub version: Option<String>,
}

impl BucketStore {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `object_store` handle, for callers that need the raw API (e.g. Parquet readers).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store path of a key. Keys that object_store cannot address (empty segments, `.`,
    /// `..`, a trailing `/`) are refused rather than silently rewritten.
    pub fn path(&self, key: &str) -> Result<Path> {
        let invalid =
            |reason: String| StorageError::InvalidKey { bucket: self.name.clone(), key: key.to_string(), reason };
        if key.is_empty() {
            return Err(invalid("empty key".to_string()));
        }
        let path = Path::parse(key).map_err(|e| invalid(e.to_string()))?;
        // `Path::parse` drops a leading or trailing `/`; such a key would silently become another.
        if path.as_ref() != key {
            return Err(invalid("a key cannot begin or end with '/' here".to_string()));
        }
        Ok(path)
    }

    pub fn object(&self, key: &str) -> ObjectRef {
        ObjectRef::new(&self.name, key)
    }

    pub async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path(key)?;
        self.store.head(&path).await.map_err(|e| StorageError::read(&self.object(key), e))
    }

    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let object = self.object(key);
        let result = self.store.get(&path).await.map_err(|e| StorageError::read(&object, e))?;
        match result.payload {
            // In one read (object_store's own would allocate off this thread).
            GetResultPayload::File(file, _) => {
                let range = result.range;
                let (_, buf) = read_file(file, range.start, range.end - range.start, Vec::new(), &object).await?;
                Ok(Bytes::from(buf))
            }
            GetResultPayload::Stream(_) => result.bytes().await.map_err(|e| StorageError::read(&object, e)),
        }
    }

    /// Opens `range` (or the whole object) for reading; returns the object's metadata too.
    pub(crate) async fn open(
        &self,
        key: &str,
        range: Option<Range<u64>>,
        condition: &ReadCondition,
    ) -> Result<(ObjectMeta, ByteSource)> {
        let path = self.path(key)?;
        let object = self.object(key);
        if range.as_ref().is_some_and(|r| r.start >= r.end) {
            let meta = self.store.head(&path).await.map_err(|e| StorageError::read(&object, e))?;
            return Ok((meta, ByteSource::Stream(stream::empty().boxed())));
        }
        let options = GetOptions {
            if_match: condition.if_match.clone(),
            version: condition.version.clone(),
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&path, options).await.map_err(|e| match e {
            object_store::Error::Precondition { .. } => StorageError::SourceChanged {
                object: object.to_string(),
                expected_etag: condition.if_match.clone().unwrap_or_default(),
            },
            e => StorageError::read(&object, e),
        })?;
        let meta = result.meta.clone();
        // Not every S3-compatible server honours If-Match: compare the ETag as well.
        if let (Some(expected), Some(actual)) = (&condition.if_match, &meta.e_tag) {
            if expected != actual {
                return Err(StorageError::SourceChanged {
                    object: object.to_string(),
                    expected_etag: expected.clone(),
                });
            }
        }
        let byte_range = result.range.clone();
        let source = match result.payload {
            GetResultPayload::File(file, _) => ByteSource::File(FileRange::new(file, byte_range, object)),
            GetResultPayload::Stream(s) => {
                ByteSource::Stream(s.map_err(move |e| StorageError::read(&object, e)).boxed())
            }
        };
        Ok((meta, source))
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(key)?;
        self.store.put(&path, bytes.into()).await.map(|_| ()).map_err(|e| StorageError::Write {
            bucket: self.name.clone(),
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => {
                Err(StorageError::Write { bucket: self.name.clone(), key: key.to_string(), message: e.to_string() })
            }
        }
    }

    /// Lists the objects whose key starts with `prefix` (a plain string prefix, as in S3's
    /// ListObjectsV2: `folder1` also matches `folder10/x`), in ascending key order, starting
    /// after `start_after` (exclusive) when given.
    pub fn list_sorted(&self, prefix: &str, start_after: Option<&str>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = prefix.trim_start_matches('/').to_string();
        let start_after = start_after.filter(|s| s.as_bytes() >= prefix.as_bytes()).map(str::to_string);
        // object_store prefixes are whole path segments: list the directory that holds `prefix`
        // and filter by the string prefix.
        let parent = match prefix.rfind('/') {
            Some(at) => match self.path(&prefix[..at]) {
                Ok(p) => Some(p),
                Err(e) => return stream::once(async { Err(e) }).boxed(),
            },
            None => None,
        };
        let bucket = self.name.clone();
        let list_error =
            move |e: object_store::Error| StorageError::Read { object: format!("s3://{bucket}"), source: e };
        match self.order {
            ListingOrder::Sorted => {
                // Start the listing just below the prefix (or after `start_after`) so that the
                // store skips the keys before it; a key equal to the prefix is included.
                let offset = start_after
                    .clone()
                    .or_else(|| offset_below(&prefix))
                    .and_then(|offset| Path::parse(&offset).ok().filter(|p| p.as_ref() == offset));
                let listed = match &offset {
                    Some(offset) => self.store.list_with_offset(parent.as_ref(), offset),
                    None => self.store.list(parent.as_ref()),
                };
                let after = start_after.clone();
                let filter_prefix = prefix.clone();
                listed
                    .map_err(list_error)
                    .try_filter(move |m| {
                        let key = m.location.as_ref();
                        let keep = after.as_deref().is_none_or(|a| key > a);
                        futures::future::ready(keep)
                    })
                    .try_take_while(move |m| {
                        // Sorted: the first key past the prefix ends the listing.
                        let key = m.location.as_ref();
                        futures::future::ready(Ok(key.starts_with(&filter_prefix) || key < filter_prefix.as_str()))
                    })
                    .try_filter(move |m| futures::future::ready(m.location.as_ref().starts_with(&prefix)))
                    .boxed()
            }
            ListingOrder::Unsorted => sorted_walk(self.store.clone(), parent, prefix, start_after, list_error),
        }
    }
}

/// A key that sorts just below every key starting with `prefix` (and above every other key
/// below it): the prefix with its last character decremented, followed by U+10FFFF.
fn offset_below(prefix: &str) -> Option<String> {
    let mut chars = prefix.chars();
    let last = chars.next_back()?;
    let before = char::from_u32((last as u32).checked_sub(1)?)?;
    Some(format!("{}{before}\u{10FFFF}", chars.as_str()))
}

/// A directory walk that yields keys in ascending order: each directory's entries are sorted
/// with sub-directories keyed as `name/`, which orders whole keys exactly as S3 does.
fn sorted_walk(
    store: Arc<dyn ObjectStore>,
    root: Option<Path>,
    prefix: String,
    start_after: Option<String>,
    list_error: impl Fn(object_store::Error) -> StorageError + Send + Sync + 'static,
) -> BoxStream<'static, Result<ObjectMeta>> {
    enum Entry {
        Object(ObjectMeta),
        Dir(Path),
    }
    struct Walk {
        store: Arc<dyn ObjectStore>,
        stack: Vec<std::vec::IntoIter<Entry>>,
        pending_root: Option<Option<Path>>,
    }
    let may_hold = {
        let prefix = prefix.clone();
        let start_after = start_after.clone();
        move |dir_key: &str| {
            let prefix_ok = prefix.starts_with(dir_key) || dir_key.starts_with(prefix.as_str());
            let after_ok = start_after.as_deref().is_none_or(|a| a.starts_with(dir_key) || dir_key > a);
            prefix_ok && after_ok
        }
    };
    let keep = move |key: &str| key.starts_with(prefix.as_str()) && start_after.as_deref().is_none_or(|a| key > a);
    let walk = Walk { store, stack: Vec::new(), pending_root: Some(root) };
    let list_error = Arc::new(list_error);
    stream::try_unfold(walk, move |mut walk| {
        let may_hold = may_hold.clone();
        let keep = keep.clone();
        let list_error = list_error.clone();
        async move {
            let list_dir = |store: Arc<dyn ObjectStore>, dir: Option<Path>| {
                let list_error = list_error.clone();
                async move {
                    let listed = store.list_with_delimiter(dir.as_ref()).await.map_err(|e| list_error(e))?;
                    let mut entries: Vec<(String, Entry)> = listed
                        .objects
                        .into_iter()
                        .map(|m| (m.location.to_string(), Entry::Object(m)))
                        .chain(listed.common_prefixes.into_iter().map(|p| (format!("{p}/"), Entry::Dir(p))))
                        .collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok::<_, StorageError>(entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>().into_iter())
                }
            };
            if let Some(root) = walk.pending_root.take() {
                let entries = list_dir(walk.store.clone(), root).await?;
                walk.stack.push(entries);
            }
            loop {
                let Some(top) = walk.stack.last_mut() else { return Ok(None) };
                match top.next() {
                    None => {
                        walk.stack.pop();
                    }
                    Some(Entry::Object(meta)) => {
                        if keep(meta.location.as_ref()) {
                            return Ok(Some((meta, walk)));
                        }
                    }
                    Some(Entry::Dir(dir)) => {
                        if may_hold(&format!("{dir}/")) {
                            let entries = list_dir(walk.store.clone(), Some(dir)).await?;
                            walk.stack.push(entries);
                        }
                    }
                }
            }
        }
    })
    .boxed()
}

/// Maps bucket names to stores for one backend.
#[derive(Debug)]
pub struct Stores {
    config: StoreConfig,
    buckets: Mutex<HashMap<String, BucketStore>>,
    /// Staged batches kept for a finaliser in this process instead of written (see
    /// [`Stores::keeping_staged_batches`]).
    staged: Option<StagedCache>,
}

impl Stores {
    pub fn new(config: StoreConfig) -> Self {
        Stores { config, buckets: Mutex::new(HashMap::new()), staged: None }
    }

    pub fn from_url(url: &str) -> Result<Self> {
        Ok(Stores::new(StoreConfig::from_url(url)?))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Keeps the batches staged through these stores in memory, up to a bound, instead of
    /// writing them as objects, for the map run finaliser that uses these stores too
    /// (`staged_cache.rs`). Only where nothing else could ever read a staged object: the
    /// workers and the coordinator of a run in one process whose cluster does not outlive it,
    /// as in `stepmap run`. Elsewhere a finaliser in another process, or one resuming after a
    /// crash, would miss the batches kept.
    pub fn keeping_staged_batches(self) -> Self {
        Stores { staged: Some(StagedCache::default()), ..self }
    }

    pub(crate) fn staged_cache(&self) -> Option<&StagedCache> {
        self.staged.as_ref()
    }

    /// The store that holds `bucket`.
    pub fn bucket(&self, bucket: &str) -> Result<BucketStore> {
        check_bucket_name(bucket)?;
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let config_error = |message: String| StorageError::Config { message };
        let (store, order): (Arc<dyn ObjectStore>, ListingOrder) = match &self.config {
            StoreConfig::Memory => (Arc::new(InMemory::new()), ListingOrder::Sorted),
            StoreConfig::Local { data_dir } => {
                let dir = data_dir.join(bucket);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| config_error(format!("cannot create bucket directory {}: {e}", dir.display())))?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| config_error(format!("bucket directory {}: {e}", dir.display())))?;
                (Arc::new(fs), ListingOrder::Unsorted)
            }
            StoreConfig::S3(s3) => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                    let allow_http = s3.allow_http.unwrap_or(endpoint.starts_with("http://"));
                    builder = builder.with_allow_http(allow_http);
                } else if let Some(allow_http) = s3.allow_http {
                    builder = builder.with_allow_http(allow_http);
                }
                let region = s3
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".to_string());
                builder = builder.with_region(region).with_virtual_hosted_style_request(s3.virtual_hosted_style);
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                if let Some(token) = &s3.session_token {
                    builder = builder.with_token(token);
                }
                if s3.skip_signature {
                    builder = builder.with_skip_signature(true);
                }
                let store = builder.build().map_err(|e| config_error(format!("S3 bucket {bucket:?}: {e}")))?;
                (Arc::new(store), ListingOrder::Sorted)
            }
        };
        let entry = BucketStore { name: bucket.to_string(), store, order };
        buckets.insert(bucket.to_string(), entry.clone());
        Ok(entry)
    }
}

/// Refuses names that would escape the data directory or that no S3 bucket can have.
fn check_bucket_name(bucket: &str) -> Result<()> {
    let invalid = |reason: &str| Err(StorageError::InvalidBucket { bucket: bucket.to_string(), reason: reason.into() });
    if bucket.is_empty() {
        return invalid("empty bucket name");
    }
    if bucket == "." || bucket == ".." {
        return invalid("not a bucket name");
    }
    if bucket.contains(['/', '\\']) || bucket.chars().any(char::is_control) {
        return invalid("bucket names cannot contain '/', '\\' or control characters");
    }
    if bucket.len() > 255 {
        return invalid("bucket name too long");
    }
    Ok(())
}

//! Backends for the conformance suite, and small helpers.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::Value;
use stepmap_storage::batch_plan::BatchLimits;
use stepmap_storage::{BatchDescriptor, Item, ItemReader, ItemReaderSpec, S3Config, StoreConfig, Stores};
use tempfile::TempDir;

pub const BUCKET: &str = "test-bucket";
const ACCESS_KEY: &str = "stepmap-test";
const SECRET_KEY: &str = "stepmap-test-secret";

/// One backend under test; keeps its temporary directory and server alive.
pub struct Backend {
    pub stores: Arc<Stores>,
    _dir: Option<TempDir>,
    _server: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    pub fn memory() -> Backend {
        Backend { stores: Arc::new(Stores::new(StoreConfig::Memory)), _dir: None, _server: None }
    }

    pub fn local() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig::Local { data_dir: dir.path().to_path_buf() };
        Backend { stores: Arc::new(Stores::new(config)), _dir: Some(dir), _server: None }
    }

    /// An S3 server (s3s-fs over a temporary directory) on a loopback port, with SigV4
    /// authentication, and a store configured to reach it path-style.
    pub async fn s3() -> Backend {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;

        let dir = tempfile::tempdir().expect("tempdir");
        for bucket in [BUCKET, "other-bucket", "results"] {
            std::fs::create_dir_all(dir.path().join(bucket)).expect("bucket directory");
        }
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            while let Ok((socket, _)) = listener.accept().await {
                let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        });
        let config = StoreConfig::S3(S3Config {
            endpoint: Some(format!("http://{address}")),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            ..S3Config::default()
        });
        Backend { stores: Arc::new(Stores::new(config)), _dir: Some(dir), _server: Some(server) }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(server) = &self._server {
            server.abort();
        }
    }
}

pub async fn put(stores: &Stores, bucket: &str, key: &str, body: impl Into<Bytes>) {
    stores.bucket(bucket).expect("bucket").put(key, body.into()).await.expect("put");
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).expect("zstd")
}

/// An ItemReaderSpec from definition-shaped JSON.
pub fn spec(resource: &str, reader_config: Value, parameters: Value, max_items: Option<u64>) -> ItemReaderSpec {
    let config = serde_json::from_value(reader_config).expect("ReaderConfig");
    let resource = format!("arn:aws:states:::s3:{resource}");
    ItemReaderSpec::new(&resource, &config, &parameters, max_items).expect("spec")
}

pub async fn read_all(reader: &ItemReader) -> Result<Vec<Item>, stepmap_storage::StorageError> {
    reader.items().try_collect().await
}

pub async fn values(stores: &Arc<Stores>, spec: ItemReaderSpec) -> Vec<Value> {
    let reader = ItemReader::open(stores.clone(), spec).await.expect("open");
    read_all(&reader).await.expect("read").into_iter().map(|i| i.value).collect()
}

/// Reads every descriptor of a plan, in order.
pub async fn read_plan(
    reader: &ItemReader,
    plan: &[BatchDescriptor],
) -> Result<Vec<Item>, stepmap_storage::StorageError> {
    let mut items = Vec::new();
    for descriptor in plan {
        let batch: Vec<Item> = reader.batch_items(descriptor).try_collect().await?;
        assert_eq!(batch.len() as u64, descriptor.items);
        items.extend(batch);
    }
    Ok(items)
}

/// Plans with `limits`, checks the plan's shape, and returns the items read back through it.
pub async fn planned_items(reader: &ItemReader, limits: &BatchLimits) -> Vec<Item> {
    let plan = reader.plan(limits, None).await.expect("plan");
    let mut next = 0;
    for batch in &plan {
        assert_eq!(batch.first_index, next, "batches are contiguous");
        assert!(batch.items > 0);
        if let Some(max) = limits.max_items_per_batch {
            assert!(batch.items <= max, "{} items in a batch of at most {max}", batch.items);
        }
        assert_eq!(batch.items, batch.extents.iter().map(|e| e.items()).sum::<u64>());
        next += batch.items;
    }
    read_plan(reader, &plan).await.expect("read plan")
}

/// Runs an async test body on a fresh runtime (for proptest bodies).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(future)
}
